"""A rig of real controllers on fake switches, a fake OVSDB and an in-process store.

`cluster.running(tmp_path)` runs N controllers wired as the daemon wires
them (`member`), in the test's event loop, on a fake patch fabric
(`fabric`), with their APIs on loopback (`http`); `settled` says when it is
at rest. No root, no Open vSwitch, no etcd: the fast tier's rig.
"""
