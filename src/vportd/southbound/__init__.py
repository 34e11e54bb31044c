"""The adapters to Open vSwitch: what the controller says to switches and reads of them.

`openflow` is the OpenFlow 1.3 endpoint switches connect to, with its codec;
`ovsdb` follows each hypervisor's OVSDB server for its ports and declared
links; `frames` builds and parses the few Ethernet frames the controller
handles. What leaves them is the core's `Flow` or small typed records.
"""
