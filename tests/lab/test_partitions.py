"""Partitions on the overlay lab: a controller cut from everything, from etcd, from its
peers, or from its switches, and the cluster after the heal.

One lab for the module (3 hypervisors, 3 controllers with a 3 s lease, 6 VMs in 2
segments); each test cuts one controller, checks what the others do and what the
cut one may no longer do, and heals in `finally`. After every heal the cluster is
consistent again: every controller has an etcd session, every controller's
`GET /v1/vports` equals etcd's records, and every switch has one master: the one
etcd names, that every controller's `GET /v1/switches` names, and the only
controller OVS gives the master role to.

- Cut from everything (the leader's management link down): the other two elect a
  new leader once the old one's lease runs out, and a migration notified through
  them completes; the old leader, alive, knows it has no session and refuses a
  notify (503 not-leader), and no record it could write changes.
- Cut from etcd (a blackhole route to etcd in its namespace): it loses its lease,
  its switches get new masters (OVS demotes it: a higher generation id), and it
  sends no flow mod while a migration changes a switch it mastered.
- Cut from its peers (blackhole routes to the other controllers): it keeps its
  session and its switches. A migration towards a switch it masters needs the
  leader's vPort sync to reach it: the notify fails within the sync timeout
  (2 s), with a reason naming the cut master, and the VM's entry stays as it
  was; after the heal the same migration succeeds.
- Cut from its switches (blackhole routes to the hosts' management addresses):
  its OpenFlow channels and OVSDB sessions drop (10 s without echo); it keeps its
  etcd session. Their flows stay, so forwarding goes on. After
  `openflow.unreachable_after` (30 s) without a channel it posts that it cannot
  reach them (`unreachable/{switch}/{id}`), and their mastership moves to a
  controller that reaches them (OVS gives it the master role); nobody counts
  their VM ports as down. After the heal the notice goes and the mastership
  returns to where the choice over every member puts it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.lab import overlay
from tests.lab.overlay import Doc, get, overlay_lab, request, sh, wait_for
from tests.lab.test_lab import BIN, vportctl
from tests.lab.test_lab import pytestmark as lab_marks
from tests.lab.test_lab_ping import ping
from vportd.cluster.codec import decode_record

pytestmark = lab_marks  # root, ovs, skipped unless root

LAYOUT = ("--hypervisors", "3", "--controllers", "3", "--vms", "6", "--segments", "2",
          "--wait", "20")  # fmt: skip
ETCD = "172.30.0.2"
HEAL = 40.0  # seconds the cluster gets to be consistent again after a heal


@pytest.fixture(scope="module")
def lab() -> Iterator[Doc]:
    with overlay_lab(*LAYOUT) as doc:
        assert wait_for(lambda: consistent(doc) == "", HEAL), consistent(doc)
        yield doc


# -- the cluster as the test sees it ----------------------------------------------------------
def ids(doc: Doc) -> list[str]:
    return [c["id"] for c in doc["controllers"]]


def index(doc: Doc, controller: str) -> int:
    return ids(doc).index(controller)


def leader(doc: Doc, c: int) -> str | None:
    status, body = request(doc, c, "GET", "/v1/cluster", timeout=3)
    return body["leader"] if status == 200 and body["session"] else None


def masters(doc: Doc, c: int) -> dict[str, str | None]:
    return {s["name"]: s["master"] for s in get(doc, c, "/v1/switches")}


def mastered_by(doc: Doc, c: int) -> list[str]:
    return sorted(s for s, m in masters(doc, c).items() if m == ids(doc)[c])


def consistent(doc: Doc) -> str:
    """What is not consistent in the cluster ("" when all is)."""
    in_session = [get(doc, c, "/v1/cluster")["session"] for c in range(len(ids(doc)))]
    if not all(in_session):
        return f"sessions: {in_session}"
    stored = overlay.etcd_entries(doc)
    for c in range(len(ids(doc))):
        if (table := overlay.entries(get(doc, c, "/v1/vports"))) != stored:
            return f"c{c}'s table {table} is not etcd's {stored}"
    return one_master_each(doc)


def one_master_each(doc: Doc, skip: frozenset[str] = frozenset()) -> str:
    """Empty if every switch (but `skip`) has the master etcd, the controllers and OVS name."""
    held = overlay.etcd_masters(doc)
    openflow = {c["id"]: f"tcp:{c['openflow']}" for c in doc["controllers"]}
    for c in range(len(ids(doc))):
        if (seen := masters(doc, c)) != held:
            return f"c{c} sees masters {seen}, etcd holds {held}"
    for hv in doc["hypervisors"]:
        if hv["name"] in skip:
            continue
        roles = overlay.ovs_roles(hv)
        chosen = [t for t, role in roles.items() if role == "master"]
        if chosen != [openflow.get(held.get(hv["name"], ""))]:
            return f"{hv['name']}: OVS roles {roles}, etcd names {held.get(hv['name'])}"
    return ""


def healed(doc: Doc) -> None:
    assert wait_for(lambda: consistent(doc) == "", HEAL), consistent(doc)


def migrate(doc: Doc, vm: str, to: str, *, via: list[int] | None = None) -> tuple[int, str]:
    """`lab migrate` (the VMM), notifying through the controllers `via` (default: all); its
    exit status and stderr. It waits 5 s for every controller to show the VM at `to`."""
    env = dict(os.environ)
    if via is not None:
        env["VPORTD_API"] = ",".join(f"http://{doc['controllers'][c]['api']}" for c in via)
    argv = [str(BIN / "vportctl"), "lab", "migrate", vm, "--to", to, "--dir", doc["dir"],
            "--precopy", "0.2", "--wait", "5", "--json"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)
    return done.returncode, done.stderr


def pending(doc: Doc, c: int) -> str:
    """How `lab migrate` names controller c when it does not show the VM where it went."""
    return f"controller(s) http://{doc['controllers'][c]['api']} do not show"


def where(doc: Doc, vm: str) -> str:
    return str(next(v["hypervisor"] for v in overlay_status(doc)["vms"] if v["name"] == vm))


def overlay_status(doc: Doc) -> dict[str, Any]:
    done = vportctl("lab", "status", "--dir", doc["dir"], "--json")
    assert done.returncode == 0, done.stderr
    status: dict[str, Any] = json.loads(done.stdout)
    return status


def a_vm_towards(doc: Doc, switch: str) -> str:
    """A VM that is not on `switch` (to migrate there)."""
    return str(next(v["name"] for v in overlay_status(doc)["vms"] if v["hypervisor"] != switch))


def timed(condition: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until `condition` held (None: not within `timeout`); printed, never asserted."""
    start = time.monotonic()
    if not wait_for(condition, timeout):
        return None
    return round(time.monotonic() - start, 1)


def place(entry: dict[str, Any]) -> tuple[Any, ...]:
    return entry["ovs"], entry["port"], entry["port_name"], entry["port_state"]


def blackhole(doc: Doc, c: int, addresses: list[str], *, on: bool) -> None:
    ns = doc["controllers"][c]["netns"]
    for addr in addresses:
        sh("ip", "-n", ns, "route", "add" if on else "del", "blackhole", f"{addr}/32")


def mgmt_ip(doc: Doc, c: int) -> str:
    return str(doc["controllers"][c]["api"]).rsplit(":", 1)[0]


# -- cut from everything ------------------------------------------------------------------------
def test_a_leader_cut_off_is_replaced_and_fenced(lab: Doc) -> None:
    boss = leader(lab, 0)
    assert boss is not None
    old = index(lab, boss)
    others = [c for c in range(3) if c != old]
    _, cut_at = overlay.etcd_read(lab, "vports/")
    sh("ip", "-n", "ov-fab", "link", "set", "dev", f"{boss}-m", "down")
    try:
        elected = timed(lambda: leader(lab, others[0]) not in (None, boss), 30)
        assert elected is not None, get(lab, others[0], "/v1/cluster")
        new = leader(lab, others[0])
        assert wait_for(lambda: leader(lab, others[1]) == new, 10)
        print(f"new leader {new} {elected} s after the cut")
        # the old leader, alive, knows its session is gone, and refuses to act as leader
        assert wait_for(lambda: get(lab, old, "/v1/cluster")["session"] is False, 10)
        assert get(lab, old, "/v1/cluster")["stale_since"] is not None
        status, health = request(lab, old, "GET", "/v1/healthz")
        assert status == 503 and health["detail"]["leading"] is False, health
        vm = lab["vms"][0]
        to = next(h["name"] for h in lab["hypervisors"] if h["name"] != where(lab, "vm0"))
        body = {"vm": vm["mac"], "source": where(lab, "vm0"), "destination": to}
        status, answer = request(lab, old, "POST", "/v1/migrations", body)
        assert (status, answer["error"]) == (503, "not-leader"), answer
        # the others carry on: the VMM's migration goes through them; only the cut
        # controller does not show the VM at its destination
        rc, err = migrate(lab, "vm0", to, via=others)
        assert rc == 3 and pending(lab, old) in err, err
        for c in others:
            entry = get(lab, c, f"/v1/vports/{vm['mac']}")
            assert (entry["ovs"], entry["migration_state"]) == (to, "not-migrating"), entry
        assert json.loads(overlay.etcd_range(lab, "leader")["leader"])["id"] == new
        # no record changed since the cut was written by the old leader
        records, _ = overlay.etcd_read(lab, "vports/")
        late = [decode_record(v).loc.writer for v, rev in records.values() if rev > cut_at]
        assert late and boss not in late, late
    finally:
        sh("ip", "-n", "ov-fab", "link", "set", "dev", f"{boss}-m", "up")
    print(f"consistent {timed(lambda: consistent(lab) == '', HEAL)} s after the heal")
    healed(lab)


# -- cut from etcd --------------------------------------------------------------------------------
def test_a_controller_cut_from_etcd_loses_its_switches_and_stops_writing_flows(lab: Doc) -> None:
    boss = leader(lab, 0)
    c = next(c for c in range(3) if ids(lab)[c] != boss and mastered_by(lab, c))
    me, mine = ids(lab)[c], mastered_by(lab, c)
    live = next(k for k in range(3) if k != c)
    blackhole(lab, c, [ETCD], on=True)
    try:
        lost = timed(lambda: get(lab, c, "/v1/cluster")["session"] is False, 20)
        assert lost is not None
        moved = timed(lambda: all(masters(lab, live)[s] not in (None, me) for s in mine), 20)
        assert moved is not None, masters(lab, live)
        print(f"{me}: session lost {lost} s after the cut, its switches moved {moved} s later")
        # OVS gave the master role to the new masters: the cut one is a slave there
        target = f"tcp:{lab['controllers'][c]['openflow']}"
        hvs = [h for h in lab["hypervisors"] if h["name"] in mine]
        assert wait_for(lambda: all(overlay.ovs_roles(h)[target] == "slave" for h in hvs), 10)
        # a migration onto a switch it mastered: it sends no flow mod
        before = overlay.metric(lab, c, "vportd_flow_mods_total")
        rc, err = migrate(lab, a_vm_towards(lab, mine[0]), mine[0])
        assert rc in (0, 3), err
        if rc == 3:  # its table follows etcd, which it cannot reach
            assert pending(lab, c) in err, err
        assert overlay.metric(lab, c, "vportd_flow_mods_total") == before
    finally:
        blackhole(lab, c, [ETCD], on=False)
    print(f"consistent {timed(lambda: consistent(lab) == '', HEAL)} s after the heal")
    healed(lab)


# -- cut from its peers -----------------------------------------------------------------------
def test_a_master_cut_from_its_peers_fails_a_migration_cleanly(lab: Doc) -> None:
    boss = leader(lab, 0)
    assert boss is not None
    c = next(c for c in range(3) if ids(lab)[c] != boss and mastered_by(lab, c))
    me, switch = ids(lab)[c], mastered_by(lab, c)[0]
    vm_name = a_vm_towards(lab, switch)
    vm = next(v for v in lab["vms"] if v["name"] == vm_name)
    notify = {"vm": vm["mac"], "source": where(lab, vm_name), "destination": switch}
    peers = [mgmt_ip(lab, k) for k in range(3) if k != c]
    blackhole(lab, c, peers, on=True)
    try:
        before = get(lab, index(lab, boss), f"/v1/vports/{vm['mac']}")
        start = time.monotonic()
        status, answer = request(lab, index(lab, boss), "POST", "/v1/migrations", notify,
                                 timeout=30)  # fmt: skip
        print(f"notify answered {status} in {time.monotonic() - start:.1f} s: {answer}")
        assert 400 <= status < 600, answer
        assert me in json.dumps(answer), answer  # the reason names the cut master
        # nothing moved: the VM is where it was, not migrating (its sequence number moved
        # on past the failed migration's), and etcd holds the same
        after = get(lab, index(lab, boss), f"/v1/vports/{vm['mac']}")
        assert place(after) == place(before) and after["migration_state"] == "not-migrating"
        assert overlay.entries([after]) in [[e] for e in overlay.etcd_entries(lab)]
        # it kept its session and its switch
        assert get(lab, c, "/v1/cluster")["session"] is True
        assert masters(lab, index(lab, boss))[switch] == me
    finally:
        blackhole(lab, c, peers, on=False)
    healed(lab)
    rc, err = migrate(lab, vm_name, switch)
    assert rc == 0, err
    healed(lab)


# -- cut from its switches ------------------------------------------------------------------------
def test_a_master_cut_from_its_switches(lab: Doc) -> None:
    boss = leader(lab, 0)
    c = next(c for c in range(3) if ids(lab)[c] != boss and mastered_by(lab, c))
    me, switch = ids(lab)[c], mastered_by(lab, c)[0]
    hosts = [h["mgmt_ip"] for h in lab["hypervisors"]]
    status = overlay_status(lab)
    here = next(v for v in status["vms"] if v["hypervisor"] == switch)
    mate = next(v for v in status["vms"] if v["segment"] == here["segment"]
                and v["hypervisor"] != switch)  # fmt: skip
    live = [k for k in range(3) if k != c]
    blackhole(lab, c, hosts, on=True)
    try:
        gone = timed(lambda: not any(s["connected"] for s in get(lab, c, "/v1/switches")), 30)
        assert gone is not None, get(lab, c, "/v1/switches")
        print(f"{me} lost its switches {gone} s after the cut; etcd: {overlay.etcd_masters(lab)}")
        # forwarding goes on: the switch's flows stay
        assert " 0% packet loss" in ping(here, mate)
        # its mastership moves to a controller that reaches it (after unreachable_after)
        others = {ids(lab)[k] for k in live}
        moved = timed(lambda: overlay.etcd_masters(lab).get(switch) in others, 90)
        assert moved is not None, overlay.etcd_masters(lab)
        print(f"{switch}: mastered by {overlay.etcd_masters(lab)[switch]} {moved} s later")
        # every switch has one master, the moved one included, and nobody took the cut
        # switch's VMs for down
        assert wait_for(lambda: one_master_each(lab) == "", 20), one_master_each(lab)
        stored = overlay.etcd_entries(lab)
        for k in live:
            assert overlay.entries(get(lab, k, "/v1/vports")) == stored
        assert {v["port_state"] for v in get(lab, live[0], "/v1/vports")} == {"up"}
        assert " 0% packet loss" in ping(here, mate)
    finally:
        blackhole(lab, c, hosts, on=False)
    print(f"consistent {timed(lambda: consistent(lab) == '', HEAL)} s after the heal")
    healed(lab)
    assert {v["port_state"] for v in get(lab, 0, "/v1/vports")} == {"up"}
