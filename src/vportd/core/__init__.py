"""The sans-I/O core: every rule of the protocol, as plain classes.

Start here: `table` holds the vPort rules (claims 1-5; `claims` what our own
OVS says), `coordinator` the leader's handshake (claims 6-7, abort, timeouts),
`vmm` the VMM's half (claims 8-9), `compiler` the flow compiler (`floods` its
flood members), `controller` puts them together (`state` its queries).
Nothing in this package reads a clock, opens a socket or starts a task.
"""
