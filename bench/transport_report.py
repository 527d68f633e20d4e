#!/usr/bin/env python3
"""Turns bench/transport_bench's JSON into the "DDS vs client-server" section of bench/README.md
(between its begin/end markers) and SVG plots in bench/plots/. Standard library only.

usage: transport_report.py RESULT.json README.md PLOTS_DIR MACHINE_TEXT
"""
import json
import os
import re
import sys

NAMES = {0: "DDS", 1: "TCP persistent", 2: "TCP per request", 3: "bare Fast DDS"}
COLORS = {0: "#1f77b4", 1: "#2ca02c", 2: "#d62728", 3: "#7f7f7f"}
PROFILES = {0: "DDS multicast", 1: "DDS star", 2: "TCP persistent", 3: "TCP per request"}
BEGIN = "<!-- transport_bench:begin (scripts/bench writes this part) -->"
END = "<!-- transport_bench:end -->"


def parse(name):
    fields = dict(re.findall(r"(\w+):(\d+)", name))
    return {k: int(v) for k, v in fields.items()}


def load(path, prefix="BM_GroupCommand"):
    points = []
    for r in json.load(open(path))["benchmarks"]:
        if not r["name"].startswith(prefix + "/") or r.get("error_occurred"):
            continue
        p = parse(r["name"])
        p.update({k: v for k, v in r.items() if isinstance(v, (int, float))})
        points.append(p)
    return points


def svg_chart(title, ylabel, series, path, log_y=False):
    """series: {label: (color, dashed, [(x, y), ...])}; x is N on a log2 axis."""
    import math

    w, h, left, right, top, bottom = 640, 360, 70, 170, 30, 45
    xs = sorted({x for _, _, pts in series.values() for x, _ in pts})
    ys = [y for _, _, pts in series.values() for _, y in pts if y > 0]
    if not xs or not ys:
        return
    ymax = max(ys) * 1.1
    ymin = min(ys) / 1.5 if log_y else 0.0

    def fx(x):
        lo, hi = math.log2(xs[0]), math.log2(xs[-1]) if len(xs) > 1 else math.log2(xs[0]) + 1
        return left + (math.log2(x) - lo) / (hi - lo) * (w - left - right)

    def fy(y):
        if log_y:
            y = max(y, ymin)
            return top + (1 - (math.log10(y) - math.log10(ymin)) / (math.log10(ymax) - math.log10(ymin))) * (h - top - bottom)
        return top + (1 - (y - ymin) / (ymax - ymin)) * (h - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
           f'<text x="{(left + w - right) / 2}" y="{h - 8}" text-anchor="middle">agents (N)</text>',
           f'<text x="14" y="{(top + h - bottom) / 2}" text-anchor="middle" transform="rotate(-90 14 {(top + h - bottom) / 2})">{ylabel}</text>']
    for x in xs:
        out.append(f'<text x="{fx(x):.1f}" y="{h - bottom + 16}" text-anchor="middle">{x}</text>')
    ticks = [ymin * (ymax / ymin) ** (i / 4) for i in range(5)] if log_y else [ymax * i / 4 for i in range(5)]
    for t in ticks:
        out.append(f'<line x1="{left - 4}" y1="{fy(t):.1f}" x2="{w - right}" y2="{fy(t):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{fy(t) + 4:.1f}" text-anchor="end">{t:.3g}</text>')
    for i, (label, (color, dashed, pts)) in enumerate(series.items()):
        pts = sorted(p for p in pts if p[1] > 0)
        if not pts:
            continue
        dash = ' stroke-dasharray="5,4"' if dashed else ""
        path_d = " ".join(f"{'M' if j == 0 else 'L'}{fx(x):.1f},{fy(y):.1f}" for j, (x, y) in enumerate(pts))
        out.append(f'<path d="{path_d}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for x, y in pts:
            out.append(f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="3" fill="{color}"/>')
        ly = top + 10 + i * 18
        out.append(f'<line x1="{w - right + 10}" y1="{ly}" x2="{w - right + 30}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{w - right + 35}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def bytes_text(p):
    # Net of idle traffic; when the idle window was not steady (secured handshakes still under
    # way) the net figure is meaningless: show the raw one, marked.
    if p["bytes"] > 0 and p["bytes"] >= 0.5 * p.get("bytes_raw", p["bytes"]):
        return f"{p['bytes']:.0f}"
    return f"{p.get('bytes_raw', 0):.0f} raw*"


def main():
    result, readme, plots, machine = sys.argv[1:5]
    points = load(result)
    os.makedirs(plots, exist_ok=True)
    # verb 0 (host.ping, answered at once as the bare agent does) is what the transports are
    # compared on; verb 1 (host.info) is shown on its own, against it.
    info = [p for p in points if p.get("verb", 0) == 1]
    points = [p for p in points if p.get("verb", 0) == 0]
    back = [p for p in points if p.get("paced", 0) == 0]
    paced = [p for p in points if p.get("paced", 0) == 1]

    def series(metric, scale=1.0):
        s = {}
        for t in (3, 0, 1, 2):
            for sec in (0, 1):
                pts = [(p["N"], p[metric] * scale) for p in back if p["transport"] == t and p["secured"] == sec]
                if pts:
                    s[NAMES[t] + (" secured" if sec else "")] = (COLORS[t], sec == 1, pts)
        return s

    svg_chart("Group command latency, p50", "ms", series("p50_ms"), os.path.join(plots, "latency.svg"), log_y=True)
    svg_chart("CPU per command (manager + agents)", "ms of CPU",
              {k: (c, d, [(x, y) for x, y in pts]) for k, (c, d, pts) in _sum(back, ("mgr_cpu_us", "agents_cpu_us"), 1e-3).items()},
              os.path.join(plots, "cpu.svg"), log_y=True)
    svg_chart("Bytes on the wire per command", "bytes", series("bytes"), os.path.join(plots, "bytes.svg"), log_y=True)

    lines = [BEGIN, "", f"Machine: {machine}", "",
             "| N | transport | secured | p50 ms | p90 ms | p99 ms | CPU/cmd manager us | CPU/cmd agents us | packets/cmd | bytes/cmd | idle B/s | RSS added by the manager MiB | RSS agents MiB | start-up s | fresh list s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in sorted(back, key=lambda p: (p["secured"], p["N"], p["transport"])):
        lines.append(
            f"| {p['N']} | {NAMES[p['transport']]} | {'yes' if p['secured'] else 'no'} | {p['p50_ms']:.2f} | {p['p90_ms']:.2f} | "
            f"{p['p99_ms']:.2f} | {p['mgr_cpu_us']:.0f} | {p['agents_cpu_us']:.0f} | {p['packets']:.1f} | {bytes_text(p)} | "
            f"{p['idle_bytes_per_s']:.0f} | {p['mgr_rss_mib']:.1f} | {p['agents_rss_mib']:.1f} | {p['startup_s']:.2f} | {p['fresh_list_s']:.3f} |")
    lines += ["", "raw*: idle traffic included (the idle window before it was not steady: secured handshakes "
              "still under way), so not comparable with the net figures."]
    if paced:
        lines += ["", "Paced, one command a second (16 agents, unsecured), against back to back:", "",
                  "| transport | paced p50 ms | paced p99 ms | back-to-back p50 ms |", "|---|---|---|---|"]
        for p in sorted(paced, key=lambda p: p["transport"]):
            b2b = [q for q in back if q["transport"] == p["transport"] and q["N"] == p["N"] and q["secured"] == 0]
            lines.append(f"| {NAMES[p['transport']]} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
                         f"{b2b[0]['p50_ms']:.2f} |" if b2b else f"| {NAMES[p['transport']]} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | |")
    bare = {p["N"]: p for p in back if p["transport"] == 3}
    lib = {p["N"]: p for p in back if p["transport"] == 0 and p["secured"] == 0}
    if bare and lib:
        lines += ["", "Library overhead: libcloudmgr over DDS against the bare Fast DDS programs (same QoS, same run):", "",
                  "| N | p50 library / bare | p99 library / bare | CPU per command library / bare (manager + agents) |",
                  "|---|---|---|---|"]
        for n in sorted(set(bare) & set(lib)):
            b, m = bare[n], lib[n]
            cpu_b = b["mgr_cpu_us"] + b["agents_cpu_us"]
            cpu_m = m["mgr_cpu_us"] + m["agents_cpu_us"]
            lines.append(f"| {n} | {m['p50_ms']:.2f} / {b['p50_ms']:.2f} ms = {m['p50_ms'] / b['p50_ms']:.2f}x | "
                         f"{m['p99_ms']:.2f} / {b['p99_ms']:.2f} ms = {m['p99_ms'] / b['p99_ms']:.2f}x | "
                         f"{cpu_m:.0f} / {cpu_b:.0f} us = {cpu_m / cpu_b:.2f}x |")
    ping = {p["N"]: p for p in back if p["transport"] == 0 and p["secured"] == 0}
    info = {p["N"]: p for p in info if p["transport"] == 0 and p["secured"] == 0 and p.get("paced", 0) == 0}
    if info and ping:
        lines += ["", "A verb that does work: host.info (the agent reads its host from libvirt, answers and republishes "
                  "its status) against host.ping, libcloudmgr over DDS, unsecured:", "",
                  "| N | host.info p50 ms | host.ping p50 ms | host.info CPU/cmd agents us | host.ping CPU/cmd agents us |",
                  "|---|---|---|---|---|"]
        for n in sorted(set(info) & set(ping)):
            i, g = info[n], ping[n]
            lines.append(f"| {n} | {i['p50_ms']:.2f} | {g['p50_ms']:.2f} | {i['agents_cpu_us']:.0f} | {g['agents_cpu_us']:.0f} |")
    startup = load(result, "BM_Startup")
    if startup:
        lines += ["", "Start-up and discovery (agents spawned until a Manager saw every host; then a fresh Manager, "
                  "a new participant as each cloudctl call, until it saw every host):", "",
                  "| N | profile | secured | all seen after start s | fresh manager lists all s |", "|---|---|---|---|---|"]
        for p in sorted(startup, key=lambda p: (p["secured"], p["N"], p["profile"])):
            lines.append(f"| {p['N']} | {PROFILES[p['profile']]} | {'yes' if p['secured'] else 'no'} | "
                         f"{p['startup_s']:.2f} | {p['fresh_list_s']:.3f} |")
    fleet = load(result, "BM_GroupOf8InFleet")
    if fleet:
        lines += ["", "A group of 8 inside a fleet of 64 (bytes on lo per command):", "",
                  "| transport | group of 8 | all 64 | p50 group of 8 ms | p50 all 64 ms |", "|---|---|---|---|---|"]
        for p in sorted(fleet, key=lambda p: p["transport"]):
            lines.append(f"| {NAMES[p['transport']]} | {p['g8_bytes']:.0f} | {p['all64_bytes']:.0f} | "
                         f"{p['g8_p50_ms']:.2f} | {p['all64_p50_ms']:.2f} |")
    lines += ["", "![latency](plots/latency.svg) ![cpu](plots/cpu.svg) ![bytes](plots/bytes.svg)", "", END]
    text = open(readme).read()
    block = "\n".join(lines)
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    open(readme, "w").write(text)


def _sum(points, metrics, scale):
    s = {}
    for t in (3, 0, 1, 2):
        for sec in (0, 1):
            pts = [(p["N"], sum(p[m] for m in metrics) * scale) for p in points if p["transport"] == t and p["secured"] == sec]
            if pts:
                s[NAMES[t] + (" secured" if sec else "")] = (COLORS[t], sec == 1, pts)
    return s


if __name__ == "__main__":
    main()
