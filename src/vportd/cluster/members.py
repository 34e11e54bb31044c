"""The cluster's members as the API shows them: who they are, who leads, what they master."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Peer:
    """Another controller (or this one) as the cluster knows it."""

    id: str
    api: str  # base URL, e.g. http://127.0.0.1:8081


@dataclass(frozen=True, slots=True)
class MemberView:
    id: str
    api: str
    healthy: bool
    switches: tuple[str, ...]  # datapath ids (16 hex digits) this member masters
    switch_names: tuple[str, ...] = ()  # their names (OVSDB's bridges), in the same order


@dataclass(frozen=True, slots=True)
class ClusterView:
    leader: str | None
    members: tuple[MemberView, ...]
    # Whether this controller holds an etcd session and a loaded table: without one,
    # the leader and members above are what it last saw, not what holds now.
    session: bool = True
    stale_since: float | None = None  # wall-clock time its last session ended, if it did
