"""The OpenFlow 1.3 endpoint switches connect to, and its codec.

`server` listens and runs a `connection.SwitchConnection` per switch (which
queues through `outbox` and matches replies in `replies`). The codec:
`wire` (header, errors, serialising), `flowcodec` (core flows to flow mods
and flow stats back), `outgoing` (the other requests) and `incoming` (what a
switch sends, as typed records). os-ken's untyped objects stay inside the
codec: what leaves it is a core `Flow`, bytes, or a small typed record.
"""
