"""Fixtures: two real cloudmgr-agent processes on simulated hosts (libvirt's test driver) in DDS
domain 194, and a Manager watching them. The build passes the paths through the environment:
CLOUDMGR_AGENT_BIN, CLOUDMGR_HOST_XML (and CLOUDMGR_C_LIBRARY for the package itself)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

import cloudmgr

DOMAIN = 194


class Agent:
    def __init__(self, host_id: str, state: Path, groups: list[str]) -> None:
        state.mkdir(parents=True, exist_ok=True)
        config = state / "agent.json"
        config.write_text(json.dumps({"lease_ms": 2000, "announce_ms": 500, "refresh_ms": 1000}))
        args = [
            os.environ["CLOUDMGR_AGENT_BIN"],
            "--config", str(config),
            "--host-id", host_id,
            "--uri", "test://" + os.environ["CLOUDMGR_HOST_XML"],
            "--state-dir", str(state),
            "--domain", str(DOMAIN),
            "--sample-ms", "200",
        ]  # fmt: skip
        for g in groups:
            args += ["--group", g]
        self.log = state / "agent.log"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Agent]]:
    root = tmp_path_factory.mktemp("agents")
    started = {
        "node1": Agent("node1", root / "node1", ["web", "db"]),
        "node2": Agent("node2", root / "node2", ["web"]),
    }
    yield started
    for a in started.values():
        a.stop()


@pytest.fixture(scope="session")
def manager(agents: dict[str, Agent], tmp_path_factory: pytest.TempPathFactory) -> Iterator[cloudmgr.Manager]:
    store = tmp_path_factory.mktemp("templates")
    with cloudmgr.Manager(domain=DOMAIN, name="pytest", lease_ms=2000, templates=str(store)) as m:
        m.wait_for_hosts(2, timeout=20)
        yield m
