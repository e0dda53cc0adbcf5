"""python benchmarks/results/s35-stall/table.py NAME...: one row per run of s35-stall's table from
NAME.json (the server's record), NAME.txt (ocpp_load's output) and NAME.load in S35_DIR
(default /tmp/s35stall). s34-stall's table.py, plus the server's CPU (% of a core over the
window), the window's turns over 10 ms, the most WebSocket pings sent in one turn of the window
(serve_probe's `ping_turns`), the most stations' handler steps (`RequestHandler._handle_request`)
in one of the window's turns over 10 ms and their most CPU, and the stations leaving without
the probe's own snapshot."""

import json
import os
import re
import sys
from pathlib import Path

DIR = Path(os.environ.get("S35_DIR", "/tmp/s35stall"))
SNAPSHOT = "main.<locals>.probe_ctx.<locals>.snapshot"


def row(name: str) -> str:
    stats = json.loads((DIR / f"{name}.json").read_text())
    text = (DIR / f"{name}.txt").read_text()
    load = (DIR / f"{name}.load").read_text().split("\n")
    loads = " -> ".join(line.split("load average:")[1].split(",")[0].strip()
                        for line in load if "load average" in line)
    at = load[0].split()[0][:5]
    start, end = stats["window"]
    boot_end = stats["boot"][1]
    turns = [t for t in stats.get("turns") or [] if not any(k == SNAPSHOT for k, _, _ in t[3])]

    def phase(keep, over_s=0.02):
        inside = [t[1] for t in turns if keep(t[0]) and t[1] > over_s]
        return f"{len(inside)} ({max(inside, default=0) * 1000:.0f} ms)"
    young = [g for g in stats["gc"] if start <= g[0] <= end]
    cols = re.search(r"^\| 5000 \| (\d+) \| \d+ \| \d+ \| ([\d.]+) ms \| ([\d.]+) ms \| \d+ ms \| "
                     r"\d+ \| ([\d.]+) s \| ([\d.]+) s \| (\d+) / (\d+) ms \| (\d+)%", text, re.M)
    cpu = re.search(r"between two probe wake-ups, the longest \(window / boot\): (\d+) / (\d+)",
                    text)
    plans = re.search(r"holding a plan it accepted: (\d+) of \d+ stations, the last ([\d.]+) s",
                      text)
    waiting = re.search(r"server [\d.]+ s / [\d.]+ s \((\d+)% of the window\)", text)
    handlers = [(n, ms) for t in turns if start <= t[0] <= end
                for k, n, ms in t[3] if k == "task RequestHandler._handle_request"]
    pings = stats.get("ping_turns")
    window_pings = max((p[1] for p in pings or () if start <= p[0] <= end), default=0)
    return (f"| {at} ({loads}) | {name} | {waiting.group(1) if waiting else '?'} % | "
            f"{phase(lambda t: t <= boot_end)} | {phase(lambda t: boot_end < t < start)} | "
            f"{phase(lambda t: start <= t <= end)} | "
            f"{phase(lambda t: start <= t <= end, 0.01).split()[0]} | {cpu.group(1)} ms | "
            f"{len(young)}, {max(g[3] for g in young) * 1000:.1f} ms | "
            f"{'-' if pings is None else window_pings} | "
            f"{max((n for n, _ in handlers), default=0)} / "
            f"{max((ms for _, ms in handlers), default=0):.0f} ms | "
            f"{phase(lambda t: t > end)} | {cols.group(2)} / {cols.group(3)} ms | "
            f"{cols.group(8)} % | {cols.group(4)} / {cols.group(5)} / "
            f"{plans.group(2) + ' s' if plans.group(1) == '5000' else plans.group(1) + ' by ' + plans.group(2) + ' s'} |")


if __name__ == "__main__":
    print("| run (UTC, load) | tree | loop waiting | boot storm: turns > 20 ms CPU (longest) | "
          "set-ups | window | window: turns > 10 ms | window: CPU between wake-ups | window's "
          "young collections: n, longest | most pings in a turn (window) | window: the most "
          "handler steps in a turn / their most CPU | stations leaving "
          "(not the probe's snapshot) | p50 / p99 (wall) | server CPU | storm settled / set-up / "
          "every plan accepted |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in sys.argv[1:]:
        print(row(name))
