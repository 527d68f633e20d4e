"""Events, templates, provisioning and the audit log through the package, against the agents
of conftest.py."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

import cloudmgr
from cloudmgr import EventKind, VmState


def test_replay_gives_the_view_host_then_its_vms(manager: cloudmgr.Manager) -> None:
    # The hosts' VMs reach a new manager just after the hosts themselves.
    deadline = time.monotonic() + 10
    while len(manager.vms()) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    with manager.watch_events(replay=True, timeout=10) as events:
        got = [next(events) for _ in range(6)]
    assert [(e.kind, e.host_id, e.vm_name) for e in got] == [
        (EventKind.HOST_ONLINE, "node1", ""),
        (EventKind.VM_ADDED, "node1", "batch1"),
        (EventKind.VM_ADDED, "node1", "db1"),
        (EventKind.HOST_ONLINE, "node2", ""),
        (EventKind.VM_ADDED, "node2", "batch1"),
        (EventKind.VM_ADDED, "node2", "db1"),
    ]
    assert got[0].groups == ("db", "web") and got[3].groups == ("web",)
    db1 = got[2]
    assert db1.state is VmState.RUNNING and db1.old_state is None and len(db1.vm_uuid) == 36
    assert db1.time_ns > 0 and db1.time.year >= 2024


def test_vm_life_as_events(manager: cloudmgr.Manager) -> None:
    node2 = cloudmgr.host("node2")
    with manager.watch_events(timeout=10) as events:
        manager.execute(node2, "vm.define", name="pyev", memory_bytes=64 << 20).raise_for_errors()
        added = events.until(lambda e: e.vm_name == "pyev", timeout=10)
        assert added.kind is EventKind.VM_ADDED and added.host_id == "node2"
        assert added.state is VmState.SHUT_OFF and added.groups == ()

        manager.execute(node2, "vm.start", vm="pyev").raise_for_errors()
        changed = events.until(lambda e: e.vm_name == "pyev", timeout=10)
        assert changed.kind is EventKind.VM_STATE_CHANGED
        assert (changed.old_state, changed.state) == (VmState.SHUT_OFF, VmState.RUNNING)

        manager.execute(node2, "vm.undefine", vm="pyev", force=True).raise_for_errors()
        removed = events.until(lambda e: e.vm_name == "pyev" and e.kind is EventKind.VM_REMOVED, timeout=10)
        assert removed.reason == "undefined" and removed.vm_uuid == added.vm_uuid

        manager.execute(node2, "group.join", group="pytest").raise_for_errors()
        grouped = events.until(lambda e: e.kind is EventKind.HOST_GROUPS_CHANGED, timeout=10)
        assert grouped.host_id == "node2" and grouped.groups == ("pytest", "web")
        manager.execute(node2, "group.leave", group="pytest").raise_for_errors()
        grouped = events.until(lambda e: e.kind is EventKind.HOST_GROUPS_CHANGED, timeout=10)
        assert grouped.groups == ("web",)
    with pytest.raises(StopIteration):
        while True:  # closed: what was queued drains, then the iterator ends
            next(events)


def test_event_stream_errors(manager: cloudmgr.Manager) -> None:
    with pytest.raises(cloudmgr.InvalidArgument, match="max_queued"):
        manager.watch_events(max_queued=0)
    with manager.watch_events(timeout=0.2) as events:
        with pytest.raises(cloudmgr.DeadlineExceeded, match="no matching event"):
            events.until(lambda e: e.host_id == "node9", timeout=0.3)


def _image(path: Path, size: int = 4 << 20) -> Path:
    path.write_bytes(b"\x5a" * size)
    return path


def test_templates_provisioning_and_audit(manager: cloudmgr.Manager, tmp_path: Path) -> None:
    image = _image(tmp_path / "tiny.img")
    t = manager.import_template("pytiny", image, {"vcpus": 1, "memory_bytes": 64 << 20, "description": "tiny"},
                                format="raw")  # fmt: skip
    assert isinstance(t, cloudmgr.Template)
    assert (t.name, t.version, t.ref, t.vcpus, t.memory_bytes) == ("pytiny", 1, "pytiny:1", 1, 64 << 20)
    assert t.description == "tiny" and t.image_format == "raw" and len(t.image_sha256) == 64
    assert t.image_size_bytes == 4 << 20 and t.created is not None and "tiny.img" in t.origin
    assert t.spec["vcpus"] == 1 and t.details["name"] == "pytiny"

    t2 = manager.import_template("pytiny", str(image), {"vcpus": 2, "memory_bytes": 128 << 20})
    assert t2.version == 2 and t2.image_format == "raw" and t2.image_sha256 == t.image_sha256
    assert [x.ref for x in manager.templates()] == ["pytiny:2"]
    assert [x.version for x in manager.template_versions("pytiny")] == [1, 2]
    assert manager.template("pytiny:1") == t and manager.template("pytiny").version == 2
    manager.verify_template("pytiny:1")

    steps: list[str] = []
    made = manager.create_vms("pyvm", "pytiny:1", host="node2", count=2, start=True, progress=steps.append)
    assert isinstance(made, cloudmgr.Provisioned)
    assert [(v.host_id, v.name, v.state) for v in made.vms] == [
        ("node2", "pyvm-1", VmState.RUNNING),
        ("node2", "pyvm-2", VmState.RUNNING),
    ]
    assert made.template.ref == "pytiny:1" and made.vms[0].template_name == "pytiny"
    assert made.image_sent_to == ("node2",) and made.image_bytes_sent == 4 << 20
    assert made.transfer_ns > 0 and made.provision_ns > 0 and len(steps) >= 2

    with pytest.raises(cloudmgr.AlreadyExists, match="pyvm-1"):
        manager.create_vms("pyvm", "pytiny:1", host="node2", count=2)
    with pytest.raises(cloudmgr.FailedPrecondition, match="pyvm-1"):
        manager.delete_template("pytiny")

    r = manager.delete_vm("node2", "pyvm-1")
    assert r.outcome is cloudmgr.Outcome.ERROR and r.code == "FAILED_PRECONDITION"
    for name in ("pyvm-1", "pyvm-2"):
        assert manager.delete_vm("node2", name, force=True).ok
    assert manager.delete_vm("node2", "nosuch", force=True).code == "NOT_FOUND"

    audit = manager.audit("node2", since=timedelta(minutes=5))
    deletes = [a for a in audit if a.verb == "vm.delete"]
    assert len(deletes) == 4 and ("vm", "pyvm-2") in deletes[2].arguments
    assert deletes[0].code == "FAILED_PRECONDITION" and deletes[1].code == "OK"
    assert deletes[1].completed is not None and deletes[1].received <= deletes[1].completed
    assert len(manager.audit("node2", max_entries=1)) == 1

    manager.delete_template("pytiny", force=True)
    assert manager.templates() == []


@pytest.mark.parametrize(
    "call, error, text",
    [
        (lambda m, img: m.import_template("bad", img, {"vcpus": 1}), cloudmgr.InvalidArgument, "memory_bytes"),
        (lambda m, img: m.import_template("bad", img, {"cpus": 1}), cloudmgr.InvalidArgument, "cpus"),
        (lambda m, img: m.import_template("bad", img, "{}"), cloudmgr.InvalidArgument, "spec must be a mapping"),
        (lambda m, img: m.import_template("bad", img, {"x": {1, 2}}), cloudmgr.InvalidArgument, "JSON"),
        (lambda m, img: m.import_template("bad", img, {"memory_bytes": 1 << 26}, format="vmdk"),
         cloudmgr.InvalidArgument, "vmdk"),
        (lambda m, img: m.import_template("bad name", img, {"memory_bytes": 1 << 26}), cloudmgr.InvalidArgument,
         "bad name"),
        (lambda m, img: m.import_template("bad", img.parent / "nosuch.img", {"memory_bytes": 1 << 26}),
         cloudmgr.CloudmgrError, "nosuch.img"),
        (lambda m, img: m.template("nosuch"), cloudmgr.NotFound, "nosuch"),
        (lambda m, img: m.template_versions("nosuch"), cloudmgr.NotFound, "nosuch"),
        (lambda m, img: m.template("x:y"), cloudmgr.InvalidArgument, "x:y"),
        (lambda m, img: m.create_vms("x", "nosuch"), cloudmgr.NotFound, "nosuch"),
        (lambda m, img: m.create_vms("x", "t", colour="red"), cloudmgr.InvalidArgument, "unknown option 'colour'"),
        (lambda m, img: m.create_vms("x", "t", host="node1", group="web"), cloudmgr.InvalidArgument,
         "exclude each other"),
        (lambda m, img: m.create_vms("x", "t", count=0), cloudmgr.InvalidArgument, "count: '0'"),
        (lambda m, img: m.create_vms("x", "t", policy="random"), cloudmgr.InvalidArgument, "random"),
        (lambda m, img: m.delete_vm("node9", "x"), cloudmgr.NotFound, "node9"),
        (lambda m, img: m.audit("node9"), cloudmgr.NotFound, "node9"),
        (lambda m, img: m.audit("node1", max_entries=0), cloudmgr.InvalidArgument, "max_entries"),
        (lambda m, img: m.capture_template("node1", "nosuch", "cap"), cloudmgr.NotFound, "nosuch"),
    ],
)  # fmt: skip
def test_bad_template_input_raises_a_typed_error_naming_it(
    manager: cloudmgr.Manager, tmp_path: Path, call, error, text
) -> None:
    image = _image(tmp_path / "bad.img", 1 << 20)
    with pytest.raises(error) as e:
        call(manager, image)
    assert text in str(e.value)


def test_a_failing_progress_callback_raises_after_the_call(manager: cloudmgr.Manager, tmp_path: Path) -> None:
    manager.import_template("pycb", _image(tmp_path / "cb.img"), {"memory_bytes": 64 << 20}, format="raw")

    def boom(step: str) -> None:
        raise RuntimeError("progress failed: " + step)

    try:
        with pytest.raises(RuntimeError, match="progress failed"):
            manager.create_vms("pycb", "pycb", host="node1", progress=boom)
        # The VM was made nonetheless (the callback only reports): remove it.
        assert manager.delete_vm("node1", "pycb", force=True).ok
    finally:
        manager.delete_template("pycb", force=True)


def test_without_a_template_store(agents) -> None:
    with cloudmgr.Manager(domain=194, name="nostore") as m:
        with pytest.raises(cloudmgr.FailedPrecondition, match="template"):
            m.templates()
