"""What a controller knows of the switches whose OVSDB server it does not follow: what
their masters publish (`node.facts`), taken by the feed as its own reads would be."""

from __future__ import annotations

import pytest

from vportd.core.topology import Link
from vportd.core.tunnels import TunnelEndpoint
from vportd.node.facts import as_snapshots, decode, encode
from vportd.node.feed import OvsdbFeed
from vportd.southbound.ovsdb.snapshot import Host, IfaceRow, Snapshot

VM = IfaceRow("tap1", "hv0", 1, True, mac="02:00:00:00:00:01")
TO_HV1 = IfaceRow("t0-1", "hv0", 101, True, peer="hv1/t1-0")
TUN = IfaceRow("vportd-tun", "hv0", 100, True, tunnel="geneve")
HV0 = Snapshot({"hv0": 1}, {r.name: r for r in (VM, TO_HV1, TUN)},
               host=Host("hv0", "172.31.0.1"))  # fmt: skip
HV1 = Snapshot({"hv1": 2}, {"t1-0": IfaceRow("t1-0", "hv1", 100, True, peer="hv0/t0-1")},
               host=Host("hv1", "172.31.0.2"))  # fmt: skip


def published(feed: OvsdbFeed, remote: str, snap: Snapshot) -> None:
    """What hv1's master publishes, as a controller that does not follow it reads it."""
    other = OvsdbFeed()
    other.snapshot(remote, snap, lambda _: True)
    facts = other.facts(next(iter(snap.bridges)))
    assert facts is not None
    read = decode(encode(facts))
    assert read == facts
    tunnels = [] if read.tunnel is None else [read.tunnel]
    feed.published(as_snapshots([read]), tunnels)


def test_a_link_to_a_server_not_followed_is_known_from_its_master_s_facts() -> None:
    feed = OvsdbFeed()
    feed.snapshot("tcp:hv0", HV0, lambda _: True)
    assert feed.declared == set()  # (the other end is on a server we do not follow)
    published(feed, "tcp:hv1", HV1)
    assert feed.declared == {Link("hv0", 101, "hv1", 100)}
    assert [e.host for e in feed.tunnels] == ["hv0", "hv1"]
    assert feed.tunnels[1] == TunnelEndpoint("hv1", "172.31.0.2", None, "geneve")


def test_a_server_forgotten_leaves_its_rows_and_keeps_what_is_published() -> None:
    feed = OvsdbFeed()
    feed.snapshot("tcp:hv0", HV0, lambda _: True)
    published(feed, "tcp:hv1", HV1)
    assert feed.vm_row("hv0", 1) == VM
    fed = feed.forget("tcp:hv0")
    assert fed.tunnels_changed and fed.links_changed
    assert feed.vm_row("hv0", 1) is None and feed.ports_of("hv0") == []
    assert not feed.following("tcp:hv0")
    assert [e.host for e in feed.tunnels] == ["hv1"]


@pytest.mark.parametrize("value", [b"", b"[]", b'{"bridge": "hv0"}', b'{"links": 3}', b"\xff"])
def test_unreadable_facts_are_a_clear_error(value: bytes) -> None:
    with pytest.raises(ValueError, match="not a switch's facts"):
        decode(value)
