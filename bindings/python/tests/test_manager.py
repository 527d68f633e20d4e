"""The Python package against real agents (conftest.py): every public call, and its errors."""

from __future__ import annotations

import copy
import dataclasses
import gc
import pickle
import signal
import time
from datetime import timedelta

import pytest

import cloudmgr
from cloudmgr import Outcome


def test_versions() -> None:
    assert cloudmgr.version().startswith("0.")
    assert cloudmgr.ABI_VERSION >= 3
    assert [n for n in cloudmgr.__all__ if not hasattr(cloudmgr, n)] == []


def test_hosts_are_dataclasses_sorted_by_id(manager: cloudmgr.Manager) -> None:
    hosts = manager.hosts()
    assert [h.id for h in hosts] == ["node1", "node2"]
    h = hosts[0]
    assert isinstance(h, cloudmgr.Host)
    assert h.online and h.state is cloudmgr.HostState.ONLINE
    assert (h.cpus, h.cpu_mhz, h.memory_bytes) == (8, 2400, 16 << 30)
    assert h.groups == ("db", "web")
    assert h.last_seen is not None and h.offline_since is None
    assert manager.host("node2").groups == ("web",)
    with pytest.raises(dataclasses_frozen_error()):
        h.cpus = 1  # type: ignore[misc]


def dataclasses_frozen_error() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_hosts_decoded_on_first_read_behave_as_plain_dataclasses(manager: cloudmgr.Manager) -> None:
    # hosts() decodes each field when it is first read (the C list stays alive meanwhile):
    # equal to, hashed, printed, copied and pickled like the eagerly built host(id).
    lazy = {h.id: h for h in manager.hosts()}
    for host_id, h in lazy.items():
        eager = manager.host(host_id)
        assert h == eager and hash(h) == hash(eager)
        assert dataclasses.asdict(h) == dataclasses.asdict(eager)
        assert repr(h) == repr(eager)
    fresh = manager.hosts()[1]  # its list's other hosts are gone: it still reads its own fields
    gc.collect()
    assert (fresh.id, fresh.groups, fresh.online) == ("node2", ("web",), True)
    copied = copy.copy(manager.hosts()[0])
    restored = pickle.loads(pickle.dumps(manager.hosts()[0]))
    assert copied == restored == manager.host("node1")
    assert "_c" not in vars(restored) and "_owner" not in vars(restored)
    every = manager.hosts()[0]
    for f in dataclasses.fields(every):
        getattr(every, f.name)
    assert "_c" not in vars(every)  # every field read: the C list is released
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        getattr(every, "nosuch")
    vms = manager.vms()  # VMs too, their details (JSON) parsed when first read
    first = pickle.loads(pickle.dumps(vms[0]))
    assert first == vms[0] and first.details == vms[0].details and first.details["disks"] is not None
    assert sorted((v.host_id, v.name) for v in vms) == sorted((v.host_id, v.name) for v in manager.vms())


def test_unknown_host_is_not_found_with_the_librarys_message(manager: cloudmgr.Manager) -> None:
    with pytest.raises(cloudmgr.NotFound) as e:
        manager.host("node9")
    assert e.value.code == "NOT_FOUND"
    assert "node9" in e.value.message
    assert isinstance(e.value, LookupError)


def test_groups(manager: cloudmgr.Manager) -> None:
    assert manager.groups() == {"db": ["node1"], "web": ["node1", "node2"]}


def test_vms_and_filters(manager: cloudmgr.Manager) -> None:
    vms = manager.vms()
    assert [(v.host_id, v.name) for v in vms] == [
        ("node1", "batch1"),
        ("node1", "db1"),
        ("node2", "batch1"),
        ("node2", "db1"),
    ]
    db1 = vms[1]
    assert db1.state is cloudmgr.VmState.RUNNING and db1.vcpus == 2 and db1.memory_bytes == 2 << 30
    assert db1.details["name"] == "db1" and "disks" in db1.details
    assert vms[0].state is cloudmgr.VmState.SHUT_OFF
    assert [v.host_id for v in manager.vms(group="db")] == ["node1", "node1"]
    assert [v.name for v in manager.vms(host="node2")] == ["batch1", "db1"]
    assert manager.vms(host="node2", group="db") == []


def test_prepare_then_command(manager: cloudmgr.Manager) -> None:
    manager.prepare(cloudmgr.all_hosts())
    manager.prepare(cloudmgr.group("web"))
    manager.prepare(cloudmgr.group("not-yet"))  # may appear later
    with pytest.raises(cloudmgr.InvalidArgument, match="bad group!"):
        manager.prepare(cloudmgr.group("bad group!"))
    assert manager.execute(cloudmgr.group("web"), "host.info").all_ok


def test_group_command_gives_a_result_per_host(manager: cloudmgr.Manager) -> None:
    r = manager.execute(cloudmgr.group("web"), "host.info")
    assert isinstance(r, cloudmgr.CommandResult)
    assert len(r) == 2 and r.all_ok and r.count(Outcome.OK) == 2
    assert [h.host_id for h in r] == ["node1", "node2"]
    assert all(h.latency_ns > 0 and h.code == "OK" and h.error() is None for h in r)
    assert len(r.command_id) == 36
    assert r.raise_for_errors() is r


def test_arguments_as_keywords_change_state(manager: cloudmgr.Manager) -> None:
    manager.execute(cloudmgr.host("node2"), "vm.suspend", vm="db1").raise_for_errors()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = {(v.host_id, v.name): v.state for v in manager.vms()}
        if states[("node2", "db1")] is cloudmgr.VmState.PAUSED:
            break
        time.sleep(0.05)
    assert states[("node2", "db1")] is cloudmgr.VmState.PAUSED
    assert states[("node1", "db1")] is cloudmgr.VmState.RUNNING
    manager.execute(cloudmgr.host("node2"), "vm.resume", {"vm": "db1"}).raise_for_errors()


def test_host_errors_are_results_and_raise_on_request(manager: cloudmgr.Manager) -> None:
    r = manager.execute(cloudmgr.all_hosts(), "vm.start", vm="nosuch")
    assert r.count(Outcome.ERROR) == 2
    err = r[0].error()
    assert isinstance(err, cloudmgr.NotFound) and "nosuch" in err.message
    with pytest.raises(cloudmgr.CommandFailed) as e:
        r.raise_for_errors()
    assert len(e.value.failed) == 2 and "2 of 2 hosts failed" in str(e.value)


def test_a_payload_comes_as_json(manager: cloudmgr.Manager) -> None:
    r = manager.execute(cloudmgr.host("node1"), "host.ps")
    assert r.all_ok and len(r[0].reply["processes"]) > 0


def test_no_reply_from_a_stopped_agent(manager: cloudmgr.Manager, agents) -> None:
    node2 = agents["node2"].process
    node2.send_signal(signal.SIGSTOP)
    try:
        r = manager.execute(cloudmgr.group("web"), "host.info", timeout=1.0)
    finally:
        node2.send_signal(signal.SIGCONT)
    by = r.by_host()
    assert by["node1"].ok
    assert by["node2"].outcome is Outcome.NO_REPLY and by["node2"].code == "DEADLINE_EXCEEDED"
    assert isinstance(by["node2"].error(), cloudmgr.DeadlineExceeded)


@pytest.mark.parametrize(
    "call, error, text",
    [
        (lambda m: m.execute(cloudmgr.host("node9"), "host.info"), cloudmgr.NotFound, "node9"),
        (lambda m: m.execute(cloudmgr.group("web"), "vm.fly"), cloudmgr.InvalidArgument, "vm.fly"),
        (lambda m: m.execute(cloudmgr.host("node1"), "vm.start"), cloudmgr.InvalidArgument, "vm"),
        (lambda m: m.execute("web", "host.info"), cloudmgr.InvalidArgument, "cloudmgr.Target"),
        (lambda m: m.execute(cloudmgr.Target("galaxy"), "host.info"), cloudmgr.InvalidArgument, "galaxy"),
        (lambda m: m.execute(cloudmgr.group(""), "host.info"), cloudmgr.InvalidArgument, "name is empty"),
        (lambda m: m.execute(cloudmgr.group("web"), "host.info", timeout=-1), cloudmgr.InvalidArgument, "negative"),
        (lambda m: m.vms(host="node\udc80"), cloudmgr.InvalidArgument, "host is not valid text"),
        (lambda m: m.forget_host("node1"), cloudmgr.FailedPrecondition, "node1"),
        (lambda m: m.wait_for_hosts(3, timeout=0.2), cloudmgr.DeadlineExceeded, "2"),
        (lambda m: m.history(cloudmgr.all_hosts(), step=-5), cloudmgr.InvalidArgument, "step"),
        (lambda m: m.history(cloudmgr.all_hosts(), since="yesterday"), cloudmgr.InvalidArgument, "since"),
    ],
)
def test_bad_input_raises_a_typed_error_naming_it(manager: cloudmgr.Manager, call, error, text) -> None:
    with pytest.raises(error) as e:
        call(manager)
    assert text in str(e.value)


def test_bad_configuration_names_the_key() -> None:
    with pytest.raises(cloudmgr.InvalidArgument, match="unknown key 'colour'"):
        cloudmgr.Manager(colour="blue")
    with pytest.raises(cloudmgr.InvalidArgument, match="domain: '300'"):
        cloudmgr.Manager(domain=300)
    with pytest.raises(cloudmgr.CloudmgrError, match="/nonexistent/pki"):
        cloudmgr.Manager(domain=194, pki="/nonexistent/pki")


def test_samples_watch_and_history(manager: cloudmgr.Manager) -> None:
    deadline = time.monotonic() + 10
    samples: list[cloudmgr.HostSample] = []
    while time.monotonic() < deadline:
        samples = manager.samples()
        if len(samples) == 2 and all(s.rates_valid for s in samples):
            break
        time.sleep(0.1)
    assert [s.host_id for s in samples] == ["node1", "node2"]
    s = samples[0]
    assert s.simulated and s.cpus == 8 and 0 <= s.cpu_pct <= 100
    db1 = s.vm("db1")
    assert db1 is not None and db1.vcpus == 2 and [v.name for v in s.vms] == ["db1"]

    with manager.watch_samples(timeout=10) as stream:
        got = [next(stream) for _ in range(4)]
    assert {g.host_id for g in got} <= {"node1", "node2"}
    assert all(isinstance(g, cloudmgr.HostSample) for g in got)
    with pytest.raises(StopIteration):
        while True:  # closed: what was queued drains, then the iterator ends
            next(stream)

    h = manager.history(cloudmgr.all_hosts(), since=timedelta(minutes=5))
    assert h.result.all_ok and len(h.result) == 2
    assert [x.host_id for x in h.series] == ["node1", "node2"]
    series = h.series[0]
    assert series.simulated and len(series.points) >= 2 and series.step_ns == 0
    p = series.points[0]
    cpu = cloudmgr.Metric.CPU_PCT
    assert p.min[cpu] <= p.avg[cpu] <= p.max[cpu] and p.samples == 1

    vm = manager.history(cloudmgr.host("node1"), vm="db1", step=timedelta(seconds=1))
    assert len(vm.series) == 1 and vm.series[0].vm_name == "db1" and vm.series[0].step_ns == 10**9


def test_closed_manager_fails_precondition(agents) -> None:
    m = cloudmgr.Manager(domain=194, name="closer")
    m.close()
    m.close()  # idempotent
    with pytest.raises(cloudmgr.FailedPrecondition, match="closed"):
        m.hosts()
    with cloudmgr.Manager(domain=194, name="ctx") as m2:
        assert isinstance(m2.groups(), dict)
    with pytest.raises(cloudmgr.FailedPrecondition):
        m2.vms()


def test_returned_objects_are_whole_dataclasses(manager: cloudmgr.Manager) -> None:
    """The package builds its frozen dataclasses without their __init__ (for speed): each must
    still have exactly its fields and equal the one its __init__ makes."""
    import dataclasses

    objects = [manager.hosts()[0], manager.vms()[0], manager.execute(cloudmgr.host("node1"), "host.info")[0]]
    deadline = time.monotonic() + 10
    while not manager.samples() and time.monotonic() < deadline:
        time.sleep(0.1)
    sample = manager.samples()[0]
    objects += [sample, sample.vms[0]]
    for obj in objects:
        names = [f.name for f in dataclasses.fields(obj)]
        assert type(obj)(**{n: getattr(obj, n) for n in names}) == obj
        # Once every field was read (hosts() decodes each on first read), exactly the fields.
        assert set(vars(obj)) == set(names), type(obj).__name__
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, names[0], None)
