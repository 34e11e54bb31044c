"""The adapters to Open vSwitch: the OpenFlow 1.3 endpoint and its codec.

`ofcodec` translates between the core's flows and OpenFlow 1.3 messages with
the os-ken codec (and nothing else of os-ken); `openflow` is the asyncio
endpoint that switches connect to. Both keep os-ken's untyped objects inside:
what leaves them is the core's `Flow` or small typed records.
"""
