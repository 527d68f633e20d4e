#!/usr/bin/env python3
"""The Python binding's cost per call (issue 8, item 6): the same calls as bench/binding_bench.cpp
through the cloudmgr package, next to the bare ctypes call into the C ABI in the same process
(so the difference is the package's own Python: dataclasses, decoding, checks), against 4 agent
processes on simulated hosts (DDS domain 221).

    CLOUDMGR_C_LIBRARY=build/bindings/c/libcloudmgr-c.so PYTHONPATH=bindings/python \\
      bench/binding_bench.py build/tools/bin/cloudmgr-agent tests/data/hosts/node-small.xml
"""

from __future__ import annotations

import ctypes
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import cloudmgr
from cloudmgr import _native as n

DOMAIN = 221
AGENTS = 4


def to_dt(ns: int) -> Optional[datetime]:
    """What a hand-written client does with a time stamp (as the package does)."""
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc) if ns > 0 else None


def timed(fn, count: int) -> tuple[float, float]:
    """Median and p90 in microseconds of `count` calls (after 10% warm-up)."""
    for _ in range(max(count // 10, 5)):
        fn()
    samples = []
    for _ in range(count):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9)]


def main() -> int:
    agent_bin, xml = sys.argv[1], sys.argv[2]
    work = Path(tempfile.mkdtemp(prefix="cloudmgr-binding-bench-py-"))
    procs = []
    for i in range(AGENTS):
        state = work / f"bench-{i}"
        state.mkdir()
        (state / "agent.json").write_text(json.dumps({"lease_ms": 2000, "announce_ms": 500}))
        with open(state / "agent.log", "ab") as log:
            procs.append(
                subprocess.Popen(
                    [agent_bin, "--config", str(state / "agent.json"), "--host-id", f"bench-{i}", "--uri",
                     "test://" + xml, "--group", "bench", "--state-dir", str(state), "--domain", str(DOMAIN)],
                    stdout=log, stderr=subprocess.STDOUT)
            )  # fmt: skip
    try:
        with cloudmgr.Manager(domain=DOMAIN, name="bench-py", samples=False) as m:
            m.wait_for_hosts(AGENTS, timeout=20)
            h = m._handle()

            def raw_hosts() -> None:
                out = ctypes.c_void_p()
                if n.lib.cm_manager_hosts(h, ctypes.byref(out)) != 0 or n.lib.cm_host_list_size(out) != AGENTS:
                    raise RuntimeError(n.lib.cm_last_error().decode())
                n.lib.cm_host_list_free(out)

            def py_hosts() -> None:
                if len(m.hosts()) != AGENTS:
                    raise RuntimeError("wrong host count")

            def raw_hosts_read(fields: int) -> Callable[[], None]:
                # A hand-written ctypes client: the list, then `fields` of each host decoded.
                def run() -> None:
                    out = ctypes.c_void_p()
                    if n.lib.cm_manager_hosts(h, ctypes.byref(out)) != 0:
                        raise RuntimeError(n.lib.cm_last_error().decode())
                    for i in range(n.lib.cm_host_list_size(out)):
                        c = n.lib.cm_host_list_at(out, i).contents
                        if fields == 3:
                            (c.id.decode(), c.state == 0, c.cpus)
                        else:
                            (c.id.decode(), c.hostname.decode(), c.hypervisor.decode(), c.hypervisor_version.decode(),
                             c.uri.decode(), c.agent_version.decode(), c.state == 0, to_dt(c.last_seen_ns),
                             to_dt(c.offline_since_ns), to_dt(c.agent_started_ns), c.cpus, c.cpu_mhz, c.memory_bytes,
                             c.free_memory_bytes, c.vcpus_allocated, c.memory_allocated_bytes, c.vms_defined,
                             c.vms_active, tuple(g.decode() for g in c.groups[:c.group_count]))  # fmt: skip
                    n.lib.cm_host_list_free(out)

                return run

            def py_hosts_read(fields: int) -> Callable[[], None]:
                def run() -> None:
                    for x in m.hosts():
                        if fields == 3:
                            (x.id, x.online, x.cpus)
                        else:
                            (x.id, x.hostname, x.hypervisor, x.hypervisor_version, x.uri, x.agent_version, x.online,
                             x.last_seen, x.offline_since, x.agent_started, x.cpus, x.cpu_mhz, x.memory_bytes,
                             x.free_memory_bytes, x.vcpus_allocated, x.memory_allocated_bytes, x.vms_defined,
                             x.vms_active, x.groups)  # fmt: skip

                return run

            def raw_group() -> None:
                out = ctypes.c_void_p()
                if n.lib.cm_manager_execute(h, 1, b"bench", b"host.info", None, 0, 30000, ctypes.byref(out)) != 0:
                    raise RuntimeError(n.lib.cm_last_error().decode())
                ok = n.lib.cm_result_count(out, 0)
                n.lib.cm_result_free(out)
                if ok != AGENTS:
                    raise RuntimeError(f"{ok} of {AGENTS} ok")

            def py_group() -> None:
                m.execute(cloudmgr.group("bench"), "host.info").raise_for_errors()

            rows = [
                ("hosts(), 4 hosts", timed(raw_hosts, 3000), timed(py_hosts, 3000)),
                ("hosts() + 3 fields each", timed(raw_hosts_read(3), 3000), timed(py_hosts_read(3), 3000)),
                ("hosts() + all 19 fields each", timed(raw_hosts_read(19), 3000), timed(py_hosts_read(19), 3000)),
                ("group command host.info to 4", timed(raw_group, 300), timed(py_group, 300)),
            ]
        print(f"{'call':32} {'ctypes C call p50/p90 us':>26} {'cloudmgr package p50/p90 us':>29} {'package extra p50 us':>21}")
        for name, (c50, c90), (p50, p90) in rows:
            print(f"{name:32} {c50:12.1f} / {c90:9.1f}  {p50:14.1f} / {p90:10.1f}  {p50 - c50:20.1f}")
        return 0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=20)


if __name__ == "__main__":
    sys.exit(main())
