"""python benchmarks/results/s33-stall/summarise.py STATS.json [...]: the turns of the loop over
20 ms of its thread's CPU in a kept server record (SMARTCHARGE_BENCH_STATS with
SMARTCHARGE_PROBE_TURNS=0.02), split by phase - the boot storm (to its settling), the set-ups after it, in
the window (steady), after it (the stations leaving: not serving work) - and put down to
causes with ocpp_load's attribution; the loop's own CPU between two probe wake-ups, the longest
per phase (s33-stall)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from benchmarks.ocpp_load import turn_causes  # noqa: E402


def main(paths: list[str]) -> None:
    for path in paths:
        stats = json.loads(Path(path).read_text())
        start, end = stats["window"]
        turns = stats.get("turns") or []
        busy = stats.get("busy") or []
        print(f"## {path}")
        boot_end = stats["boot"][1]
        for phase, keep in (("the boot storm", lambda t: t <= boot_end),
                            ("the set-ups after it", lambda t: boot_end < t < start),
                            ("the window", lambda t: start <= t <= end),
                            ("after the window", lambda t: t > end)):
            inside = [t for t in turns if keep(t[0])]
            most = max((b for s, b in busy if keep(s)), default=0.0)
            print(f"# {phase}: {len(inside)} turns over 20 ms CPU, the longest "
                  f"{max((t[1] for t in inside), default=0) * 1000:.0f} ms; the loop's own CPU "
                  f"between two probe wake-ups, the longest {most * 1000:.0f} ms")
            for _at, spent_s, count, kinds, *_ in sorted(inside, key=lambda t: -t[1])[:6]:
                top = "; ".join(f"{kind} x{n} {ms:.0f} ms" for kind, n, ms in kinds[:4])
                print(f"#     {spent_s * 1000:.0f} ms, {count} callbacks: {top}")
                stacks = _[2] if len(_) > 2 else []   # SMARTCHARGE_PROBE_TURN_STACKS
                for where, n in stacks[:4]:
                    print(f"#         {n} samples in {where}")
            pieces = [q for q in stats.get("replan_pieces") or () if keep(q[0])]
            for label in ("read_steps", "replan"):
                mine = sorted((q for q in pieces if q[1] == label), key=lambda q: -q[3])
                if mine:
                    print(f"#   {label}: {len(mine)} pieces, the longest: " + ", ".join(
                        f"#{q[2]} {q[3] * 1000:.1f} ms{' (gc)' if q[4] else ''}"
                        for q in mine[:6]))
            for cause, (n, longest_s, cpu_s) in sorted(turn_causes(inside, 0.02).items(),
                                                       key=lambda kv: -kv[1][1])[:12]:
                print(f"#   {n:4d} turns, the longest {longest_s * 1000:6.1f} ms: {cause}")


if __name__ == "__main__":
    main(sys.argv[1:])
