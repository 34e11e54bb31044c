"""Test doubles that let the controller's real parts run without Open vSwitch.

`FakeOFTable` applies encoded OpenFlow 1.3 flow mods and traces frames,
`FakeSwitch` is an OpenFlow 1.3 switch that connects to controllers (one per
bridge, several per event loop), `FakeOvsdb` an OVSDB server answering what
vportd's monitor asks. As Faucet tests its valve against its own FakeOFTable.
"""
