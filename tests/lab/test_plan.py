"""The lab's layout, state file and controller config: pure, no root needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vportd.ctl import cli
from vportd.node.config import parse_config
from vportd_lab.bed import controllers as ctl
from vportd_lab.bed import store
from vportd_lab.bed.commands import LabError
from vportd_lab.bed.plan import SUN_PATH_MAX, make_plan
from vportd_lab.bed.state import Options, State, StateError, load


def test_the_default_layout() -> None:
    plan = make_plan(Path("/run/vportd-lab"))
    assert [(h.name, h.dpid_hex) for h in plan.hypervisors] == [
        ("hv0", "0000000000000001"),
        ("hv1", "0000000000000002"),
    ]
    assert [(v.name, v.mac, v.cidr, v.hypervisor, v.port, v.host_if) for v in plan.vms] == [
        ("vm0", "02:00:00:00:00:01", "10.0.0.1/24", "hv0", 1, "vm0h"),
        ("vm1", "02:00:00:00:00:02", "10.0.0.2/24", "hv1", 2, "vm1h"),
        ("vm2", "02:00:00:00:00:03", "10.0.0.3/24", "hv0", 3, "vm2h"),
    ]
    (c0,) = plan.controllers
    assert (c0.id, c0.openflow, c0.api) == ("c0", "127.0.0.1:6653", "127.0.0.1:8080")
    assert c0.target == "tcp:127.0.0.1:6653"
    assert plan.ovs_rundir == Path("/run/vportd-lab/ovs")


def test_patch_links_are_a_full_mesh_with_fixed_ports() -> None:
    plan = make_plan(Path("/x"), hypervisors=3)
    assert [(k.a, k.a_name, k.a_port, k.b, k.b_name, k.b_port) for k in plan.links] == [
        ("hv0", "p0-1", 101, "hv1", "p1-0", 100),
        ("hv0", "p0-2", 102, "hv2", "p2-0", 100),
        ("hv1", "p1-2", 102, "hv2", "p2-1", 101),
    ]


def test_vm_ids_are_stable_and_distinct() -> None:
    a = make_plan(Path("/x"), vms=5)
    b = make_plan(Path("/y"), vms=5)
    assert [v.vm_id for v in a.vms] == [v.vm_id for v in b.vms]
    assert len({v.vm_id for v in a.vms}) == 5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hypervisors": 0}, "--hypervisors must be between 1"),
        ({"vms": 100}, "--vms must be between 1 and 99"),
        ({"controllers": 10}, "--controllers must be between 0 and 9"),
        ({"openflow_port": 8080, "api_port": 8080}, "overlap"),
        ({"controllers": 2, "openflow_port": 6653, "api_port": 6654}, "overlap"),
        ({"controllers": 2, "openflow_port": 6653, "etcd_port": 6654}, "etcd ports"),
        ({"etcd_port": 2379, "etcd_peer_port": 2379}, "etcd ports"),
    ],
)
def test_bad_options_are_refused(options: dict[str, int], message: str) -> None:
    with pytest.raises(LabError, match=message):
        make_plan(Path("/x"), **options)  # type: ignore[arg-type]  # (mode is a str)


def test_a_lab_dir_too_long_for_unix_sockets_is_refused() -> None:
    with pytest.raises(LabError, match=f"unix sockets allow {SUN_PATH_MAX}"):
        make_plan(Path("/" + "d" * 100))


def test_the_controller_config_is_one_vportd_accepts() -> None:
    plan = make_plan(Path("/run/vportd-lab"), controllers=2, openflow_port=7000, api_port=9000)
    c1 = plan.controllers[1]
    config = parse_config(ctl.config_text(plan, c1))
    assert config.controller.id == "c1"
    assert config.openflow.listen == "127.0.0.1:7001"
    assert config.api.listen == "127.0.0.1:9001"
    assert config.api.token_file == Path("/run/vportd-lab/api.token")
    assert config.ovsdb.remotes == ["unix:/run/vportd-lab/ovs/db.sock"]
    assert config.topology.lldp is False
    assert config.logging.level == "info"
    # one code path for every lab with controllers: the cluster, on the lab's etcd
    assert config.store.kind == "etcd"
    assert config.store.endpoints == ["127.0.0.1:2379"]
    assert config.api.peer_token_file == Path("/run/vportd-lab/peer.token")


def test_with_tls_every_channel_is_planned_encrypted() -> None:
    plan = make_plan(Path("/run/lab"), controllers=2, tls_ovsdb_port=6641)
    assert plan.tls is not None and plan.ca == Path("/run/lab/tls/ca.pem")
    assert plan.tls.ovsdb_remote == "ssl:127.0.0.1:6641"
    c1 = plan.controllers[1]
    assert (c1.target, c1.url) == ("ssl:127.0.0.1:6654", "https://127.0.0.1:8081")
    config = parse_config(ctl.config_text(plan, c1))
    assert config.ovsdb.remotes == ["ssl:127.0.0.1:6641"]
    assert config.api.url == "https://127.0.0.1:8081"
    assert config.tls is not None
    assert (config.tls.ca, config.tls.cert, config.tls.key) == (
        Path("/run/lab/tls/ca.pem"), Path("/run/lab/tls/c1.pem"), Path("/run/lab/tls/c1.key"),
    )  # fmt: skip
    plain = make_plan(Path("/run/lab")).controllers[0]
    assert (plain.target, plain.url) == ("tcp:127.0.0.1:6653", "http://127.0.0.1:8080")
    assert make_plan(Path("/run/lab")).ca is None


def test_tls_needs_controllers_to_encrypt() -> None:
    with pytest.raises(LabError, match="--tls needs controllers"):
        make_plan(Path("/x"), controllers=0, mode="standalone", tls_ovsdb_port=6641)


def test_the_etcd_is_planned_with_controllers_only() -> None:
    etcd = make_plan(Path("/run/lab"), etcd_port=3000, etcd_peer_port=3001).etcd
    assert etcd is not None and etcd.endpoint == "127.0.0.1:3000" and etcd.peer_port == 3001
    assert etcd.data_dir == Path("/run/lab/etcd/data")
    assert make_plan(Path("/run/lab"), controllers=0).etcd is None


def test_an_etcd_command_line_is_told_apart() -> None:
    mine = store.owned_by(Path("/run/lab"))
    assert mine(["etcd", "--name", "vportd", "--data-dir", "/run/lab/etcd/data"])
    assert mine(["/usr/bin/etcd", "--data-dir=/run/lab/etcd/data"])
    assert not mine(["etcd", "--data-dir", "/run/lab2/etcd/data"])
    assert not mine(["vportd", "--data-dir", "/run/lab/etcd/data"])


def test_a_vportd_command_line_is_told_apart() -> None:
    mine = ctl.owned_by(Path("/run/lab"))
    py = "/venv/bin/python"
    assert mine([py, "/venv/bin/vportd", "--config", "/run/lab/c0.toml"])
    assert mine(["/usr/bin/vportd", "--config=/run/lab/c1.toml"])
    assert not mine([py, "/venv/bin/vportd", "--config", "/run/lab2/c0.toml"])
    assert not mine(["/usr/bin/vim", "--config", "/run/lab/c0.toml"])
    assert ctl.owns(Path("/run/lab/c0.toml"))(["vportd", "--config", "/run/lab/c0.toml"])
    assert not ctl.owns(Path("/run/lab/c0.toml"))(["vportd", "--config", "/run/lab/c1.toml"])


def test_the_state_file_round_trips(tmp_path: Path) -> None:
    state = State(str(tmp_path), Options(2, 3, 1, 6653, 8080, 4000, 4001), namespaces=["vm0"])
    state.controllers["c0"] = 42
    state.etcd_started, state.etcd_pid = True, 43
    state.save(tmp_path / "lab.json")
    loaded = load(tmp_path / "lab.json")
    assert loaded == state
    assert loaded is not None and loaded.plan().vms[0].name == "vm0"
    etcd = loaded.plan().etcd
    assert etcd is not None and etcd.endpoint == "127.0.0.1:4000"
    assert loaded.plan().tls is None
    assert load(tmp_path / "missing.json") is None


def test_the_state_file_keeps_tls(tmp_path: Path) -> None:
    options = Options(2, 3, 1, 6653, 8080, 4000, 4001, tls_ovsdb_port=4002)
    State(str(tmp_path), options).save(tmp_path / "lab.json")
    loaded = load(tmp_path / "lab.json")
    assert loaded is not None
    tls = loaded.plan().tls
    assert tls is not None and tls.ovsdb_port == 4002 and tls.dir == tmp_path / "tls"


def test_the_overlay_layout() -> None:
    plan = make_plan(Path("/run/lab"), hypervisors=3, vms=5, controllers=2, fabric="overlay",
                     segments=2, encap="vxlan")  # fmt: skip
    assert plan.overlay and plan.encap == "vxlan" and not plan.links
    assert [(s.tag, s.vni, s.name) for s in plan.segments] == [(10, 10, "seg10"), (20, 20, "seg20")]
    hv2 = plan.hypervisors[2]
    assert (hv2.name, hv2.bridge, hv2.dpid, hv2.netns) == ("hv2", "br-int", 3, "ov-hv2")
    assert (hv2.mgmt_ip, hv2.encap_ip) == ("172.30.0.102", "172.31.0.3")
    assert plan.host_rundir(hv2) == Path("/run/lab/hv2")
    assert [(vm.netns, vm.hypervisor, vm.segment, vm.port) for vm in plan.vms] == [
        ("ov-vm0", "hv0", 10, 1), ("ov-vm1", "hv1", 20, 2), ("ov-vm2", "hv2", 10, 3),
        ("ov-vm3", "hv0", 20, 4), ("ov-vm4", "hv1", 10, 5),
    ]  # fmt: skip
    c1 = plan.controllers[1]
    assert (c1.netns, c1.target, c1.url) == ("ov-c1", "tcp:172.30.0.11:6653",
                                             "http://172.30.0.11:8080")  # fmt: skip
    assert plan.etcd is not None and plan.etcd.endpoint == "172.30.0.2:2379"
    config = parse_config(ctl.config_text(plan, c1))
    assert config.ovsdb.remotes == [f"tcp:172.30.0.{100 + i}:6640" for i in range(3)]
    assert config.store.endpoints == ["172.30.0.2:2379"]
    assert config.openflow.listen == "172.30.0.11:6653"


def test_one_segment_is_untagged_and_the_patch_fabric_stays_the_default() -> None:
    plan = make_plan(Path("/run/lab"), fabric="overlay")
    assert [(s.tag, s.vni) for s in plan.segments] == [(0, 0)]
    assert {vm.segment for vm in plan.vms} == {0}
    patch = make_plan(Path("/run/lab"))
    assert patch.fabric == "patch" and not patch.overlay
    assert (patch.hypervisors[0].bridge, patch.vms[0].netns) == ("hv0", "vm0")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fabric": "mesh"}, "--fabric"),
        ({"fabric": "overlay", "encap": "gre"}, "--encap"),
        ({"segments": 10}, "--segments"),
        ({"fabric": "overlay", "tls_ovsdb_port": 6641}, "--tls"),
    ],
)
def test_bad_overlay_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(LabError, match=message):
        make_plan(Path("/x"), **options)  # type: ignore[arg-type]


def test_the_state_file_keeps_the_fabric(tmp_path: Path) -> None:
    options = Options(2, 3, 1, 6653, 8080, fabric="overlay", segments=3, encap="vxlan")
    State(str(tmp_path), options).save(tmp_path / "lab.json")
    loaded = load(tmp_path / "lab.json")
    assert loaded is not None
    plan = loaded.plan()
    assert (plan.fabric, len(plan.segments), plan.encap) == ("overlay", 3, "vxlan")


@pytest.mark.parametrize("text", ["", "{", '{"version": 1}', '{"version": 99, "options": {}}'])
def test_a_broken_state_file_is_reported(tmp_path: Path, text: str) -> None:
    (tmp_path / "lab.json").write_text(text)
    with pytest.raises(StateError):
        load(tmp_path / "lab.json")


@pytest.mark.parametrize("action", ["up", "status", "down"])
def test_the_lab_needs_root(
    action: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["lab", action, "--dir", "/nonexistent"]) == 1
    assert f"'lab {action}' needs root" in capsys.readouterr().err
