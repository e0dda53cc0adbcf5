"""s37-stall: the paired table from the runs' printed outputs (this directory's *.txt), in the
order they ran.

    python3 benchmarks/results/s37-stall/table.py [RUN ...]
"""

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def grab(pattern: str, text: str, default: str = "-") -> str:
    found = re.search(pattern, text, re.M)
    return found.group(1) if found else default


def row(path: Path) -> str | None:
    text = path.read_text()
    main = re.search(r"^\| 5000 (\S+) \|(.*)$", text, re.M)
    if not main:
        return None
    cells = [c.strip() for c in main.group(2).split("|")]
    # held, offered, sustained, p50, p99, max, backlog, settled, setup, turn, stall, cpu, ...
    start = re.search(r"start (\S+) load (\S+)", text)
    end = re.search(r"^# end (\S+) load (\S+)", text, re.M)
    waiting = grab(r"server [\d.]+ s / [\d.]+ s \((\d+)% of the window\)", text)
    turns = re.search(r"single turns of the loop in the window.*?: (\d+) turns.*?turns over "
                      r"5 ms: (\d+) CPU / (\d+) wall, 10 ms: (\d+) CPU / (\d+) wall, 15 ms: "
                      r"(\d+) CPU / (\d+) wall, 20 ms: (\d+) CPU / (\d+) wall", text)
    boot_turn = grab(r"the boot storm's longest \d+ ms wall, (\d+) ms CPU", text)
    default = grab(r"holding a fail-safe default it accepted: 5000 of 5000 stations, the last "
                   r"([\d.]+) s", text)
    plan = grab(r"holding a plan it accepted: (\d+ of 5000 stations, the last [\d.]+) s", text)
    plan = re.sub(r"5000 of 5000 stations, the last ", "", plan).replace(
        " of 5000 stations, the last ", " by ")
    plan_cpu = grab(r"holding a plan it accepted: .*?server CPU to then ([\d.]+) s", text)
    ready_cpu = grab(r"; ready ([\d.]+) /", text)
    held = grab(r"frames held by the turn's CPU bound, by kind \(frames, their summed wait\): "
                r"to the window's start (.*?); in the window (.*)$", text)
    held_win = grab(r"frames held by the turn's CPU bound, by kind .*; in the window (.*)$",
                    text)
    lanes = grab(r"held by the turn's CPU (\w+)", text)
    stages = re.search(r"transactions acknowledged (\S+) / (\S+); outboxes drained (\S+) / "
                       r"(\S+); the server's last phase probe \(TriggerMessage\) (\S+) / (\S+);",
                       text)
    stage_cell = (f"{max(stages.group(1), stages.group(2), key=_num)} / "
                  f"{max(stages.group(3), stages.group(4), key=_num)} / "
                  f"{max(stages.group(5), stages.group(6), key=_num)} s"
                  if stages else "-")
    calls = grab(r"the server's calls to the stations, sent / answers read: before the window "
                 r"(\d+) /", text)
    return (f"| {start.group(1)[:5]} ({start.group(2)} -> {end.group(2) if end else '?'}) "
            f"| {main.group(1)} | {waiting} % | {cells[3]} / {cells[4]} | {cells[9]} | "
            + (f"{turns.group(4)} / {turns.group(6)} / {turns.group(8)} | "
               if turns else "- | ")
            + f"{boot_turn} ms | {cells[7]} / {cells[8]} / {default} / {plan} s | "
            f"{stage_cell} | {calls} | "
            f"{cells[11]} | {ready_cpu} / {plan_cpu} s | {held} | {held_win} | {lanes} |")


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return -1.0


def main(argv: list[str]) -> int:
    paths = [HERE / f"{name}.txt" for name in argv] if argv else sorted(
        HERE.glob("*.txt"), key=lambda p: p.read_text().split("start ", 1)[-1][:8])
    print("| run (UTC, load start -> end) | tree | loop waiting (window) | p50 / p99 | longest "
          "turn wall / CPU (window) | turns > 10 / 15 / 20 ms CPU (window) | the boot storm's "
          "longest turn, CPU | storm settled / set-up (\"ready\") / every default / every plan "
          "accepted | \"ready\"'s conditions: transactions acknowledged / outboxes drained / "
          "the server's "
          "last phase probe (the later station process) | the server's calls sent before "
          "\"ready\" | server CPU (window) | server CPU to \"ready\" / to every plan | frames "
          "held to \"ready\" (kind: n, summed wait) | frames held in the window | lane steps "
          "held (whole run) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|")
    for path in paths:
        line = row(path) if path.exists() else None
        if line:
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
