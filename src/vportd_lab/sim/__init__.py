"""An in-process cluster and a fake data plane, for tests, the bench and the demo.

Nothing here touches a socket: controllers exchange messages through a queue
the caller delivers (in order, out of order, twice), and flow mods land in fake
switch tables that can trace where a frame goes.
"""
