"""s36-stall: the before/after table from the runs' printed outputs (this directory's *.txt).

    python3 benchmarks/results/s36-stall/table.py [RUN ...]
"""

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def grab(pattern: str, text: str, default: str = "-") -> str:
    found = re.search(pattern, text)
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
    inbound = re.search(r"read -> handling begun \(inbound budget\) \| ([\d.]+) ms \| "
                        r"([\d.]+) ms", text)
    resumed = re.search(r"committed -> handler resumed \(loop busy, answers' budget\) \| "
                        r"([\d.]+) ms \| ([\d.]+) ms", text)
    per_turn = grab(r"the loop's CPU per turn while they waited ([\d.]+) ms", text)
    plan = grab(r"holding a plan it accepted: (\d+ of \d+ stations, the last [\d.]+) s", text)
    plan = re.sub(r"5000 of 5000 stations, the last ", "", plan)
    busy = grab(r"between two probe wake-ups, the longest \(window / boot\): (\d+) /", text)
    held = grab(r"'held': (\d+)", text)
    held_lanes = grab(r"held by the turn's CPU (\w+)", text)
    return (f"| {start.group(1)[:5]} ({start.group(2)} -> {end.group(2) if end else '?'}) "
            f"| {main.group(1)} | {waiting} % | {cells[3]} / {cells[4]} | {cells[9]} | "
            + (f"{turns.group(4)} / {turns.group(6)} / {turns.group(8)} | "
               f"{turns.group(5)} / {turns.group(7)} / {turns.group(9)} | {turns.group(1)} | "
               if turns else "- | - | - | ")
            + f"{cells[10].split(' / ')[0]} / {busy} ms | "
            + (f"{inbound.group(1)} / {inbound.group(2)} ms | " if inbound else "- | ")
            + (f"{resumed.group(1)} / {resumed.group(2)} ms | " if resumed else "- | ")
            + f"{per_turn} ms | {cells[7]} / {cells[8]} / {plan} s | {cells[11]} | "
            f"{held} / {held_lanes} |")


def main(argv: list[str]) -> int:
    paths = [HERE / f"{name}.txt" for name in argv] if argv else sorted(
        HERE.glob("*.txt"), key=lambda p: p.read_text().split("start ", 1)[-1][:8])
    print("| run (UTC, load) | tree | loop waiting | p50 / p99 | longest turn wall / CPU "
          "| turns > 10 / 15 / 20 ms CPU | turns > 10 / 15 / 20 ms wall | turns | between "
          "wake-ups wall / CPU (3 turns) | read -> handling begun, median / p99 | committed -> "
          "resumed, median / p99 | loop CPU per turn while a MeterValues waits | storm settled "
          "/ set-up / every plan accepted | server CPU | frames / lane steps held by the "
          "turn's CPU |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for path in paths:
        line = row(path) if path.exists() else None
        if line:
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
