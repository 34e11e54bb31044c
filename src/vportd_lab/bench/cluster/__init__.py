"""The cluster benchmark: 3 `vportd` processes, etcd and a dummy-datapath OVS on loopback.

Measured, never asserted. Four parts, on one cluster (`vportd_lab.bed.cluster`):

1. Migration handshake: the VMM's `POST /v1/migrations` → 201 (both vPort
   syncs answered), to the leader and to a follower (forwarded); each
   migration is then aborted with `DELETE /v1/migrations/{id}` so that the
   next can run, over a rotation of VMs (so a VM's roll-back is over before
   its next notify).
2. Port event propagation: one `ovs-vsctl add-port` at a time; the time from
   the master's table entry to the entry in every controller's table, and
   from `ovs-vsctl` started to every table. Times come from the controllers
   themselves (the trace of `vportd_lab.bed.traced`, CLOCK_MONOTONIC), not polls.
4. Leader failover: SIGKILL the leader → the first 201 to a notify sent to
   the live controllers (each tried in turn every `RETRY_EVERY` s).
3. Boot storm (last, it leaves 10,000 ports): VM ports added in big OVSDB
   transactions (the rows `ovs-vsctl add-port` writes) → every controller holds all.
"""
