"""`vportctl demo --sim`: a VM migrates around three hypervisors, narrated, without root.

It runs the core on an in-process cluster (3 controllers, 3 hypervisors, a
fake data plane) and shows each step of the handshake, the tables, and where
traffic for the VM goes. `vportctl demo` without `--sim` runs the same tour on
a real lab (`vportd_lab.demo.live`).
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from vportd.core.messages import EventKind, PortEvent
from vportd.core.topology import Topology
from vportd_lab.sim.cluster import SimCluster

HYPERVISORS = ("hv0", "hv1", "hv2")
VM = "02:00:00:00:00:01"
PEER = "02:00:00:00:00:02"


def _topology() -> Topology:
    topo = Topology()
    for i, name in enumerate(HYPERVISORS):
        topo.add_switch(name, i + 1)
    for i, a in enumerate(HYPERVISORS):
        for j in range(i + 1, len(HYPERVISORS)):
            topo.add_link(a, 100 + j, HYPERVISORS[j], 100 + i)
    return topo


def _places(edge: set[tuple[str, int]]) -> str:
    return ", ".join(f"{switch} port {port}" for switch, port in sorted(edge)) or "dropped"


class Demo:
    def __init__(self, out: TextIO | None) -> None:
        self.sim = SimCluster.build(_topology(), 3)
        self.out = out
        self.port = {VM: ("hv0", 1)}

    def say(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out)

    def event(self, kind: EventKind, ovs: str, port: int, mac: str, up: bool = False) -> None:
        self.sim.port_event(PortEvent(kind, ovs, port, mac, f"tap{port}", link_up=up))
        self.sim.deliver_all()

    def boot(self, mac: str, ovs: str, port: int) -> None:
        self.event(EventKind.ADD, ovs, port, mac)
        self.event(EventKind.MODIFY, ovs, port, mac, up=True)

    def where(self, mac: str) -> str:
        fabric = self.sim.fabric
        assert fabric is not None
        seen = {_places(fabric.deliveries(s, 99, mac)) for s in HYPERVISORS}
        return " | ".join(sorted(seen))

    def table_line(self) -> str:
        parts = []
        for cid, ctl in self.sim.controllers.items():
            rec = ctl.vport(VM)
            state = f"{rec.migration_state}/{rec.port_state}"
            parts.append(f"{cid}: {rec.loc.ovs} {state} seq={rec.seq}")
        return "; ".join(parts)

    def migrate(self, dst: str, dst_port: int) -> dict[str, object]:
        src, src_port = self.port[VM]
        self.say(f"\n== migrate {VM} {src} -> {dst}")
        mid = self.sim.notify(VM, src, dst)
        pending = len(self.sim.queue)
        self.sim.deliver_all()
        answer = self.sim.answer_for(mid)
        assert answer is not None and answer.ok
        self.say(f"  notify -> {pending} vPort syncs; both answered; notify complete ({mid})")
        self.say(f"  tables: {self.table_line()}")
        self.event(EventKind.ADD, dst, dst_port, VM)
        self.say(f"  pre-copy, destination tap added: traffic -> {self.where(VM)}")
        self.event(EventKind.MODIFY, src, src_port, VM, up=False)
        self.event(EventKind.MODIFY, dst, dst_port, VM, up=True)
        self.say(f"  switchover, VM up at {dst}: traffic -> {self.where(VM)}")
        self.event(EventKind.DELETE, src, src_port, VM)
        self.say(f"  source tap deleted (vm-migration): {self.table_line()}")
        self.port[VM] = (dst, dst_port)
        state = self.sim.leader.migration(mid).state
        return {"id": mid, "source": src, "destination": dst, "state": str(state)}


def run_demo(json_output: bool = False, out: TextIO | None = None) -> int:
    """Narrate (unless `json_output`), then print one JSON line with every migration."""
    stream = out or sys.stdout
    demo = Demo(None if json_output else stream)
    demo.say("vportd demo (in-process core: 3 controllers, 3 hypervisors, fake data plane)")
    demo.boot(VM, "hv0", 1)
    demo.boot(PEER, "hv1", 2)
    demo.say(f"VM {VM} on hv0; traffic -> {demo.where(VM)}")
    results = [demo.migrate("hv1", 3), demo.migrate("hv2", 4), demo.migrate("hv0", 5)]
    ok = all(r["state"] == "completed" for r in results)
    demo.say("\nall migrations completed" if ok else "\nsome migration did not complete")
    print(json.dumps({"migrations": results}), file=stream)
    return 0 if ok else 1
