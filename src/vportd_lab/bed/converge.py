"""Waiting for a lab's cluster to agree on where a VM is, as `lab migrate` does at its end."""

from __future__ import annotations

import time

from vportd.ctl.client import Client, ClientError
from vportd.ctl.target import read_token
from vportd_lab.bed.plan import Plan


def _agrees(client: Client, mac: str, ovs: str, port: int) -> bool:
    try:
        v = client.vport(mac)
    except ClientError:
        return False
    where = (v.get("ovs"), v.get("port"))
    return v.get("migration_state") == "not-migrating" and where == (ovs, port)


def await_cluster(
    plan: Plan, mac: str, ovs: str, port: int, wait: float
) -> tuple[float, list[str]]:
    """Wait (up to `wait` s) until every controller shows the VM not-migrating on `ovs` port
    `port`: (ms waited, the API of each controller that still does not); (0, []) without
    controllers (standalone)."""
    start = time.monotonic()
    if not plan.controllers:
        return 0.0, []
    token = read_token(plan.token_file)
    clients = [Client(c.url, token, timeout=2.0, ca=plan.ca) for c in plan.controllers]
    try:
        pending = list(clients)
        while pending:
            pending = [c for c in pending if not _agrees(c, mac, ovs, port)]
            if not pending or time.monotonic() - start > wait:
                break
            time.sleep(0.01)
    finally:
        for c in clients:
            c.close()
    return (time.monotonic() - start) * 1e3, [c.urls[0] for c in pending]
