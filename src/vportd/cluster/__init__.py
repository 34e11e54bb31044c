"""The cluster: etcd as the store of record, leadership, mastership, peer transport."""
