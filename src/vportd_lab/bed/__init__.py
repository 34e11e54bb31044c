"""The test bed: private Open vSwitch instances, hypervisor bridges, VMs as namespaces."""
