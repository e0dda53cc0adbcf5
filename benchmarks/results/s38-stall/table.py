"""s38-stall: one row per ocpp_load run (its printed output NAME.txt and, when kept, the
server's record NAME-stats.json beside it): the window's and the set-up's single turns, the
stations leaving (after the window), p50/p99, the set-up's stages and the server's calls in the
window.

    python3 benchmarks/results/s38-stall/table.py DIR NAME..."""
import json
import re
import sys
from pathlib import Path


NOT_STATIONS_LEAVING = ("probe_ctx", "RequestHandler.shutdown", "StationLink.close", "_run_app")


def after_turns(stats: dict) -> tuple[int, float]:
    """The stations leaving (after the window): the traced turns over 20 ms CPU but the
    benchmark's own snapshot of the collector and the server's shutdown (SIGTERM after)."""
    w1 = stats["window"][1]
    after = [e[1] for e in stats.get("turns") or [] if e[0] > w1 and e[3]
             and not any(k in e[3][0][0] for k in NOT_STATIONS_LEAVING)]
    return sum(1 for c in after if c > 0.020), max(after, default=0.0) * 1000


def setup_turns(stats: dict) -> tuple[int, float]:
    """Boot storm settled -> the window: single turns over 20 ms CPU, the longest."""
    span = (stats["boot"][1], stats["window"][0])
    inside = [cpu for at, cpu, *_ in stats.get("long_turns") or [] if span[0] <= at < span[1]]
    return sum(1 for c in inside if c > 0.020), max(inside, default=0.0) * 1000


def row(folder: Path, name: str) -> str:
    text = (folder / f"{name}.txt").read_text()
    first = re.search(r"start (\S+) load ([\d.]+)", text)
    end = re.search(r"# end (\S+) load ([\d.]+)", text)
    cells = next(line for line in text.splitlines() if line.startswith(f"| 5000 {name}"))
    c = [x.strip() for x in cells.strip("|").split("|")]
    p50, p99, settled = c[4], c[5], c[8]
    window = re.search(r"single turns of the loop in the window .*?the longest ([\d.]+) ms wall, "
                       r"([\d.]+) ms CPU.*?20 ms: (\d+) CPU", text)
    setup = re.search(r"single turns of the loop in the set-up .*?the longest ([\d.]+) ms wall, "
                      r"([\d.]+) ms CPU.*?20 ms: (\d+) CPU", text)
    plan = re.search(r"holding a plan it accepted: (\d+) of \d+ stations, the last ([\d.]+) s "
                     r"after the first connection; server CPU to then ([\d.]+) s", text)
    drained = re.search(r"outboxes drained ([\d.]+) / ([\d.]+)", text)
    calls = re.search(r"the server's calls in the window \(.*?\): (.*)", text)
    cpu = c[12]
    after = "-"
    setup_cell = f"{setup.group(2)} ms ({setup.group(3)})" if setup else "-"
    stats_file = folder / f"{name}-stats.json"
    if stats_file.exists():
        stats = json.loads(stats_file.read_text())
        n, longest = after_turns(stats)
        after = f"{longest:.0f} ms ({n})"
        n, longest = setup_turns(stats)
        setup_cell = f"{longest:.1f} ms ({n})"
    return (f"| {name} | {first.group(1)[:5]} ({first.group(2)} -> {end.group(2)}) | {p50} / {p99} | "
            f"{window.group(2)} ms ({window.group(3)}) | {setup_cell} | {after} | {settled} | "
            f"{max(float(drained.group(1)), float(drained.group(2))):.1f} s | "
            f"{plan.group(2)} s, {plan.group(3)} s CPU"
            f"{'' if plan.group(1) == '5000' else ' (' + plan.group(1) + ' stations)'} | "
            f"{calls.group(1) if calls else '-'} | {cpu} |")


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    print("| run | start (load start -> end) | p50 / p99 | window: longest turn CPU (turns > 20 ms CPU) "
          "| set-up: the same | stations leaving: the same | boot storm settled | outboxes "
          "drained | every plan accepted (server CPU to then) | the server's calls in the window "
          "| server CPU (window) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for name in sys.argv[2:]:
        print(row(folder, name))
