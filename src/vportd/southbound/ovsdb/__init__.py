"""The OVSDB monitor: which VM each port belongs to, and the declared inter-switch links.

`monitor.OvsdbMonitor` follows one OVSDB server on the event loop, with our
own JSON-RPC client (`wire`); every time the database changes it hands on an
immutable `snapshot.Snapshot` of the rows vportd reads, kept up to date by
`mirror.Mirror`. `snapshot.diff_ports` (pure) turns two snapshots into port
changes, `snapshot.declared_links` finds the links they declare.

A VM port is an Interface with `external_ids:attached-mac` (libvirt's and
OpenStack's convention, with `iface-id` and `vm-id`); any other port is
infrastructure: a patch port (`options:peer`) or a port with
`external_ids:vportd-peer=BRIDGE/INTERFACE` declares an inter-switch link.
"""
