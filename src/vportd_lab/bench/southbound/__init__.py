"""The southbound benchmark (`python -m vportd_lab.bench.southbound`): OVS to core, core to OVS.

Everything is real but the datapath: a private Open vSwitch (`PrivateOVS`,
dummy datapath: its own ovsdb-server and ovs-vswitchd, no traffic) and the
controller (`Runtime`: core, OpenFlow endpoint, OVSDB monitor) in this
process's event loop. LLDP is off; the links are patch ports, read from OVSDB.

Fabric: S bridges hv0..hv{S-1} in a line joined by patch ports (hv{i}'s port
towards hv{j} is OpenFlow port 100+j); VM port k is a dummy interface on
hv{k % S}, OpenFlow port k // S + 1, with libvirt's external_ids
(attached-mac, iface-id, vm-id).

1. **Port latency, ovs-vsctl.** With a controller connected to every bridge, N
   ports are added one at a time, each with its own `ovs-vsctl add-port` (as
   libvirt does, with `ofport_request`). Per port, from just before the
   command is started, on one clock (`time.monotonic`): when the OVSDB
   monitor read the snapshot that first shows the port (the transaction has
   committed; `Snapshot.taken`), the one that first shows ovs-vswitchd's
   `ofport`, the one that first shows `link_state` up; when the runtime
   started on the snapshot that made the entry (the hand-off); when the entry
   was in the core's table and when it was up there (`Runtime.port_event_hook`,
   called right after the core took the event); when ovs-vsctl exited (it
   waits for ovs-vswitchd). The next port is added once all of these happened
   and the controller is idle (flow mods confirmed).
2. **Flow install.** That controller is stopped, every bridge's flows are
   deleted (`ovs-ofctl del-flows`), and a new controller is started on a new
   OpenFlow port. Once it listens and holds the N VMs (from OVSDB), the
   bridges are pointed at it in one ovs-vsctl call. Measured from just before
   that call, and from the first switch's connection (after the OpenFlow
   handshake), to the last barrier-confirmed flow mod, once every switch is
   reconciled and nothing is queued. Then every switch's flows are read back
   (flow stats) and must equal what the compiler believes installed.
3. **Controller restart.** A third controller takes over the same way; it
   reads every switch's flows and must send no flow mod.
4. **ovs-vsctl's floor.** On a fresh private OVS with one bridge and no
   controller, F times each (interleaved): the run time of `ovs-vsctl
   --version` (exec only, no database) and of `ovs-vsctl --no-wait add-port`
   (the arguments of 1.), from just before the process is started to its exit.
5. **Port latency, one OVSDB connection.** On a fresh private OVS, the fabric
   of 1. built again (so port k meets the same k ports already there, with
   the same names, MACs and `ofport_request`), the procedure and timing
   points of 1., but the VMM is `OVSDBClient`: one long-lived JSON-RPC
   connection to ovsdb-server (as os-vif and Neutron's agents keep through
   ovsdbapp), one `transact` per port with the rows ovs-vsctl writes plus
   `next_cfg += 1`, timed from just before the request is written; the call
   returns once ovs-vswitchd's `cur_cfg` reaches that value (ovs-vsctl's wait).
"""
