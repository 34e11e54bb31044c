"""The store of record as the cluster node uses it: the `Store` protocol, its types, its errors.

Two stores implement it: `EtcdStore` (`cluster.etcd`, production) and
`MemoryStore` (`cluster.memory`, an in-process server with etcd's semantics
for the fast tests). Keys are relative to the store's prefix:

  vports/{mac}      a vPort record (`cluster.codec`); written only by `merge`
  leader            {"id", "api"} on the leader's lease
  members/{id}      {"id", "api", "openflow"} on the member's lease
  masters/{switch}  {"id"} on the master's lease
  conflicts/{mac}/{switch}/{port}  a duplicate MAC (`cluster.board`), on the lease
                    of the controller that masters the second port's switch
  moves/{mac}       a VM's recent moves (`cluster.codec`, flap damping): written by
                    `put`, fenced by the leadership; deleted once the window passed them
  unreachable/{switch}/{id}  a switch controller `id` has had no OpenFlow channel to
                    for a while (`cluster.board`), on that controller's lease

Every write gets the next revision of one global counter. A key's
create_revision names its incarnation: a role key's is the role's generation
id (monotonic), and a `Fence` holds it. A key put on a lease is deleted when
the lease expires or is revoked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import NoReturn, Protocol, Self

from vportd.core.model import VPortRecord

__all__ = ["KV", "Fence", "Fenced", "LeaseLost", "Store", "StoreError", "Transient", "collapse"]


class StoreError(Exception):
    """The store failed, or stayed unreachable after the retries."""


class Fenced(StoreError):
    """A fence compare failed: the writer has lost the role the fence stands for."""


class LeaseLost(StoreError):
    """The session's lease expired or was revoked: every key on it is gone."""


class Transient(StoreError):
    """The store is unreachable (or had no leader) for now; the call may be tried again."""


@dataclass(frozen=True)
class Fence:
    """A role's key (relative to the prefix) and the create_revision of our incarnation of it."""

    key: str
    revision: int


@dataclass(frozen=True)
class KV:
    """A key under the prefix as `follow` delivers it; `value` None means deleted.

    `record`: the vPort record `value` encodes, when the store knows it without
    decoding (the store wrote that very value at that revision itself).
    """

    key: str
    value: bytes | None
    create_revision: int
    mod_revision: int
    record: VPortRecord | None = None


# What `Store.follow` calls: every key with the revision read at; then each change.
OnReset = Callable[[dict[str, KV], int], None]
OnChange = Callable[[list[KV], int], None]


def collapse(records: Iterable[VPortRecord]) -> dict[str, VPortRecord]:
    """One record per VM: the join of every copy given (what a merge writes at most)."""
    out: dict[str, VPortRecord] = {}
    for rec in records:
        have = out.get(rec.vm)
        out[rec.vm] = rec if have is None else have.merge(rec)
    return out


class Store(Protocol):
    """One controller's connection to the store of record (use it inside `async with`).

    Every call retries what the store lets it retry; one that still cannot
    reach the store raises `Transient`, any other failure a `StoreError`.
    """

    lease_ttl: int  # seconds: a session's keys outlive its last renewal by at most this

    async def __aenter__(self) -> Self:
        """Connect; the store's calls work only inside `async with`."""
        ...

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Disconnect (leases are left to expire: a crash does the same)."""
        ...

    # -- sessions -------------------------------------------------------------
    async def grant_lease(self) -> int:
        """A new lease of `lease_ttl` seconds: it expires unless `keep_alive` renews it."""
        ...

    async def keep_alive(self, lease: int) -> NoReturn:
        """Renew `lease` (every ttl/3) until it is lost, then raise `LeaseLost`.

        Lost: the store says the lease is gone (expired, revoked), or no renewal
        was answered for a whole TTL (the store may have expired it by then, and
        another controller may hold our roles). Cancel it to stop renewing.
        """
        ...

    async def revoke(self, lease: int) -> None:
        """End `lease` now, deleting its keys (one already gone is fine)."""
        ...

    # -- roles ----------------------------------------------------------------
    async def register(self, me: str, info: dict[str, str], lease: int) -> Fence:
        """Put `members/{me}` ({**info, "id": me}) on `lease`; a key of an older
        incarnation of `me` (another lease) is taken over, so the fence is always
        a new incarnation and fences out the old one. `LeaseLost` if `lease` is gone."""
        ...

    async def campaign(self, me: str, info: dict[str, str], lease: int) -> Fence:
        """Become the leader: create `leader` ({**info, "id": me}) on `lease`, blocking
        while another lease holds it (until that lease ends: revoked or expired).
        The fence's revision is the leadership's generation. `LeaseLost` if `lease` is
        gone; a key already on `lease` is ours."""
        ...

    async def claim(self, switch: str, me: str, lease: int) -> Fence | None:
        """Master `switch`: create `masters/{switch}` ({"id": me}) on `lease` unless another
        lease holds it (then None). The fence's revision (the key's create_revision) is
        the OpenFlow generation id. Claiming again on the same lease gives the same fence."""
        ...

    async def release(self, fence: Fence) -> None:
        """Delete the fence's key if it is still that incarnation (else nothing)."""
        ...

    async def post(self, key: str, value: bytes | None, lease: int) -> None:
        """Put `key` on `lease`, or delete it (value None): a notice for the others
        that lives no longer than its writer's session. `LeaseLost` if `lease` is gone."""
        ...

    # -- records --------------------------------------------------------------
    async def merge(self, records: Sequence[VPortRecord], fences: Sequence[Fence] = ()) -> None:
        """Join `records` into the stored ones, `VPortRecord.merge` per VM, by
        compare-and-swap: concurrent merges never lose an update, the stored record
        ends as the join of every copy written, and a key whose join is what is
        stored already is not written (no new revision).

        Fenced: while any fence's key is gone or another incarnation (its lease
        expired, it was released or taken over), nothing is written and the call
        raises `Fenced`.
        """
        ...

    async def records(self) -> tuple[dict[str, VPortRecord], int]:
        """Every stored vPort record by MAC, and the revision they were read at."""
        ...

    async def put(self, items: Mapping[str, bytes | None], fences: Sequence[Fence]) -> None:
        """Put each key's value, or delete it (None), if every fence holds (else nothing is
        written and the call raises `Fenced`). A batch too large for one transaction goes in
        several, each fenced: a failure may leave the earlier ones written."""
        ...

    async def read(self, sub: str) -> dict[str, bytes]:
        """Every key under `sub` with its value, read after every write acknowledged so far."""
        ...

    # -- the watch ------------------------------------------------------------
    async def follow(self, sub: str, on_reset: OnReset, on_change: OnChange) -> NoReturn:
        """Mirror every key under `sub` into the callbacks, forever (run it in a TaskGroup).

        on_reset(every key by name, revision) first, and again whenever resuming
        is impossible (the revision to resume from was compacted); then
        on_change(events, revision) with every change after that, in revision
        order, no revision twice, `revision` being the newest event's. A deletion
        is a `KV` whose value is None. The callbacks run in `follow`'s task, never
        inside a writer's call. After a disconnect it resumes right after the last
        revision delivered. An exception raised by a callback ends `follow`.
        """
        ...
