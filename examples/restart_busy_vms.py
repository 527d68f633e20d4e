#!/usr/bin/env python3
"""Restart every running VM of a group that uses more than a CPU threshold (share of its own
vCPUs, from the hosts' latest monitoring samples).

    restart_busy_vms.py --domain 7 --group web --above 90 [--dry-run]
"""

from __future__ import annotations

import argparse
import sys

import cloudmgr


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domain", type=int, default=0)
    p.add_argument("--group", required=True)
    p.add_argument("--above", type=float, default=90.0, help="CPU %% of the VM's vCPUs")
    p.add_argument("--hosts", type=int, default=1, help="wait for this many hosts first")
    p.add_argument("--dry-run", action="store_true")
    a = p.parse_args()

    with cloudmgr.Manager(domain=a.domain, name="restart-busy-vms") as m:
        m.wait_for_hosts(a.hosts, timeout=20)
        members = set(m.groups().get(a.group, []))
        if not members:
            print(f"no host in group {a.group!r}", file=sys.stderr)
            return 1
        # The first tick of a VM has no rates yet: wait for one sample per member with rates.
        with m.watch_samples(timeout=10) as stream:
            latest: dict[str, cloudmgr.HostSample] = {}
            for s in stream:
                if s.host_id in members and s.rates_valid:
                    latest[s.host_id] = s
                if latest.keys() == members:
                    break
        busy = [
            (s.host_id, v)
            for s in latest.values()
            for v in s.vms
            if v.state is cloudmgr.VmState.RUNNING and v.rates_valid and v.cpu_pct > a.above
        ]
        failed = 0
        for host_id, vm in sorted(busy, key=lambda b: (b[0], b[1].name)):
            if a.dry_run:
                print(f"would restart {vm.name} on {host_id} ({vm.cpu_pct:.1f}% CPU)")
                continue
            r = m.execute(cloudmgr.host(host_id), "vm.reboot", vm=vm.name)
            outcome = r[0]
            print(f"restart {vm.name} on {host_id} ({vm.cpu_pct:.1f}% CPU): {outcome.outcome.value} {outcome.message}".rstrip())
            failed += 0 if outcome.ok else 1
        print(f"{len(busy)} busy VM(s) in group {a.group}, {failed} failed")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
