"""The sans-I/O core: every rule of the protocol, as plain classes.

Start here: `table` holds the vPort rules (claims 1-5; `claims` what our own
OVS says), `coordinator` the leader's handshake (claims 6-7, abort, timeouts;
`flaps` its damping of VMs that move too often), `compiler` the flow compiler
(`floods` its flood members), `controller` puts them together (`state` its
queries). The VMM's half (claims 8-9) is vportctl's, outside the core.
Nothing in this package reads a clock, opens a socket or starts a task.
"""
