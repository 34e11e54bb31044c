"""The chaos tier's other scenarios, each with every check of a chaos case after it (`checks`).

- A controller restarted (SIGTERM, started again) in the pre-copy keeps the
  migration: the store's record and every controller's table still show it
  open with its destination, the leader still knows it, and it completes
  (kube-ovn #7419 lost a migration's options that way).
- A chained migration A -> B -> C -> A under the traffic probe: after each
  leg the traffic flows again both ways (kube-ovn #5523 lost a VM that came
  back to a host it had left).
- 1,000 concurrent notifies of one migration, spread over the leader and the
  followers: one 201 and 999 200s, all with the same id, which the VMM's own
  notify then gets too, and the migration completes.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

from tests.chaos import case, checks
from tests.chaos.harness import ChaosLab, Roles, describe
from tests.chaos.vmm import Move
from vportd.ctl.client import ClientError

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.root,
    pytest.mark.ovs,
    pytest.mark.etcd,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, veths, OVS)"),
]

NOTIFIES = 1000


@dataclass
class Restart:
    """A clean restart of one controller in the pre-copy, and what must hold right after."""

    lab: ChaosLab
    role: str
    cid: str
    move: Move
    found: list[str] = field(default_factory=list)
    done: bool = False

    def describe(self) -> str:
        return f"restart of the {self.role} ({self.cid}) in the pre-copy"

    def hook(self, moment: str) -> None:
        if moment != "precopy" or self.done:
            return
        self.done = True
        lab, mac = self.lab, self.move.vm.mac
        before = lab.record(mac)
        assert before is not None and before.mig is not None and before.migrating, before
        lab.stop_controller(self.cid)
        lab.start_controller(self.cid)
        self.found += [
            f"after the restart: {p}" for p in lab.await_settled(checks.SETTLE, quiet=False)
        ]
        self.found += self._kept(before.mig.id)

    def _kept(self, migration_id: str) -> list[str]:
        """The migration is still there: in the store, in every table, on the leader."""
        lab, mac = self.lab, self.move.vm.mac
        found = []
        after = lab.record(mac)
        if (
            after is None
            or after.mig is None
            or after.mig.id != migration_id
            or not after.migrating
        ):
            found.append(f"the store lost migration {migration_id}: {describe(after)}")
        for cid in lab.ids:
            row = lab.table(cid).get(mac)
            want = {"migration_state": "migrating", "destination": self.move.destination}
            if row is None or {k: row[k] for k in want} != want:
                found.append(f"{cid} no longer shows {mac} migrating: {row}")
        leader = lab.roles().leader
        try:
            m = lab.ask(leader, lambda c: c.migration(migration_id))
        except ClientError as err:
            return [*found, f"leader {leader} lost migration {migration_id}: {err.detail}"]
        if m.get("state") != "ready":
            found.append(f"leader {leader} shows migration {migration_id} as {m}")
        return found

    def finish(self) -> list[str]:
        self.lab.start_controller(self.cid)
        return self.found if self.done else ["the migration never reached its pre-copy"]


@pytest.mark.parametrize("role", ["leader", "source-master", "destination-master"])
def test_a_controller_restart_mid_migration_keeps_the_migration(
    chaos_lab: ChaosLab, role: str
) -> None:
    def arm(roles: Roles, move: Move) -> Restart:
        cid = case.victim(role, roles, move)
        assert cid is not None
        return Restart(chaos_lab, role, cid, move)

    result = case.scenario(chaos_lab, f"restart-{role}@precopy", arm)
    assert not result.failures, result.message()


@dataclass
class Quiet:
    """No act: the migration alone."""

    def describe(self) -> str:
        return "none"

    def hook(self, moment: str) -> None:
        pass

    def finish(self) -> list[str]:
        return []


def test_a_chained_migration_back_to_its_first_host_under_the_probe(chaos_lab: ChaosLab) -> None:
    lab = chaos_lab
    assert not checks.settled(lab)
    name = case.choose(lab, lab.roles()).vm.name
    first = lab.vm(name).hypervisor
    others = [hv.name for hv in lab.plan.hypervisors if hv.name != first]
    for leg, destination in enumerate([*others, first]):
        vm = lab.vm(name)
        third = next(hv.name for hv in lab.plan.hypervisors
                     if hv.name not in (vm.hypervisor, destination))  # fmt: skip
        peers = [v for v in lab.plan.vms if v.hypervisor == third] or [
            v for v in lab.plan.vms if v.name != name
        ]
        move = Move(vm, vm.hypervisor, destination, peers[0])
        result = case.scenario(lab, f"chained-{leg + 1}", lambda r, m: Quiet(), move, probe=True)
        assert not result.failures, result.message()
    assert lab.vm(name).hypervisor == first


@dataclass
class Storm:
    """NOTIFIES notifies of the case's migration at once, before the VMM's own."""

    lab: ChaosLab
    move: Move
    answers: list[tuple[int, str]] = field(default_factory=list)  # (status, id or error)
    done: bool = False

    def describe(self) -> str:
        return f"{NOTIFIES} concurrent notifies over every controller"

    def hook(self, moment: str) -> None:
        if moment == "notify" and not self.done:
            self.done = True
            self.answers = asyncio.run(self._storm())

    async def _storm(self) -> list[tuple[int, str]]:
        body = {"vm": self.move.vm.mac, "source": self.move.source,
                "destination": self.move.destination}  # fmt: skip
        headers = {"Authorization": f"Bearer {self.lab.token}"}
        limits = httpx.Limits(max_connections=NOTIFIES, max_keepalive_connections=NOTIFIES)
        apis = [f"http://{c.api}" for c in self.lab.plan.controllers]
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=120.0) as http:

            async def one(n: int) -> tuple[int, str]:
                try:
                    answer = await http.post(f"{apis[n % len(apis)]}/v1/migrations", json=body)
                except httpx.HTTPError as err:
                    return 0, f"{type(err).__name__}: {err}"
                doc = answer.json()
                return answer.status_code, str(doc.get("id", doc))

            return list(await asyncio.gather(*(one(n) for n in range(NOTIFIES))))

    def finish(self) -> list[str]:
        if not self.done:
            return ["the migration never reached its notify"]
        statuses = Counter(status for status, _ in self.answers)
        ids = Counter(mid for status, mid in self.answers if status in (200, 201))
        found = []
        if statuses != Counter({201: 1, 200: NOTIFIES - 1}):
            odd = [a for a in self.answers if a[0] not in (200, 201)][:5]
            found.append(f"the notifies were answered {dict(statuses)} (e.g. {odd})")
        if len(ids) != 1:
            found.append(f"the notifies got several ids: {dict(ids)}")
        return found


def test_a_thousand_concurrent_notifies_make_one_migration(chaos_lab: ChaosLab) -> None:
    storm: list[Storm] = []

    def arm(roles: Roles, move: Move) -> Storm:
        storm.append(Storm(chaos_lab, move))
        return storm[0]

    result = case.scenario(chaos_lab, "notify-storm", arm)
    assert not result.failures, result.message()
    ids = {mid for _, mid in storm[0].answers}
    assert ids == {result.outcome.migration_id}, (ids, result.outcome.migration_id)
