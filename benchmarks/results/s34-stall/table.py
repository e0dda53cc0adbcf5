"""python benchmarks/results/s34-stall/table.py NAME...: one row per run of s34-stall's table from
NAME.json (the server's record) and NAME.txt (ocpp_load's output) in the directory given by
S34_DIR (default /tmp/s34stall): turns over 20 ms CPU by phase, the young collections in the
window, the loop's CPU between two wake-ups, p50 / p99, the boot storm's settling, "ready" (load_stations: outboxes empty, probes
quiet) and every station holding a plan it accepted."""

import json
import os
import re
import sys
from pathlib import Path

DIR = Path(os.environ.get("S34_DIR", "/tmp/s34stall"))


def row(name: str) -> str:
    stats = json.loads((DIR / f"{name}.json").read_text())
    text = (DIR / f"{name}.txt").read_text()
    load = (DIR / f"{name}.load").read_text().split("\n") if (DIR / f"{name}.load").exists() \
        else []
    loads = " -> ".join(line.split("load average:")[1].split(",")[0].strip()
                        for line in load if "load average" in line)
    at = load[0].split()[0][:5] if load else "?"
    start, end = stats["window"]
    boot_end = stats["boot"][1]
    turns = stats.get("turns") or []

    def phase(keep):
        inside = [t[1] for t in turns if keep(t[0]) and t[1] > 0.02]
        return f"{len(inside)} ({max(inside, default=0) * 1000:.0f} ms)"
    young = [g for g in stats["gc"] if start <= g[0] <= end]
    cols = re.search(r"^\| 5000 \| (\d+) \| \d+ \| \d+ \| ([\d.]+) ms \| ([\d.]+) ms \| \d+ ms \| "
                     r"\d+ \| ([\d.]+) s \| ([\d.]+) s \| (\d+) / (\d+) ms", text, re.M)
    cpu = re.search(r"between two probe wake-ups, the longest \(window / boot\): (\d+) / (\d+)",
                    text)
    plans = re.search(r"holding a plan it accepted: (\d+) of \d+ stations, the last ([\d.]+) s",
                      text)
    waiting = re.search(r"server [\d.]+ s / [\d.]+ s \((\d+)% of the window\)", text)
    return (f"| {at} ({loads}) | {name} | {waiting.group(1) if waiting else '?'} % | "
            f"{phase(lambda t: t <= boot_end)} | {phase(lambda t: boot_end < t < start)} | "
            f"{phase(lambda t: start <= t <= end)} | {cpu.group(1)} ms | "
            f"{len(young)}, {sum(g[3] for g in young) * 1000:.0f} ms, "
            f"{max(g[3] for g in young) * 1000:.1f} ms, {sum(g[3] > 0.005 for g in young)} | "
            f"{phase(lambda t: t > end)} | {cols.group(2)} / {cols.group(3)} ms | "
            f"{cols.group(4)} / {cols.group(5)} / "
            f"{plans.group(2) + ' s' if plans.group(1) == '5000' else plans.group(1) + ' by ' + plans.group(2) + ' s'} |")


if __name__ == "__main__":
    print("| run (UTC, load) | tree | loop waiting | boot storm: turns > 20 ms (longest) | "
          "set-ups | window | window: CPU between wake-ups | window's young collections: "
          "n, CPU, longest, > 5 ms | stations leaving (incl. the probe's snapshot) | "
          "p50 / p99 (wall) | storm settled / \"ready\" / every plan accepted |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in sys.argv[1:]:
        print(row(name))
