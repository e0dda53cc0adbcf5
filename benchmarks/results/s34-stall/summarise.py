"""python benchmarks/results/s34-stall/summarise.py STATS.json [...]: s33-stall's summary of the
loop's turns over 20 ms CPU by phase (boot storm, set-ups, window, after it), plus (s34-stall)
the young collections of each phase (count, CPU in all, the longest), every labelled piece of
the re-plan and the dispatch round over 1 ms (SMARTCHARGE_PROBE_REPLAN_PIECES), and the guard
pass's `next()`s over 5 ms with where they resumed and stopped."""

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
            over = [t for t in inside if t[1] > 0.02]
            print(f"# {phase}: {len(over)} turns over 20 ms CPU, the longest "
                  f"{max((t[1] for t in inside), default=0) * 1000:.0f} ms; the loop's own CPU "
                  f"between two probe wake-ups, the longest {most * 1000:.0f} ms")
            young = [g for g in stats.get("gc") or () if keep(g[0])]
            if young:
                print(f"#   collections: {len(young)}, {sum(g[3] for g in young) * 1000:.0f} ms "
                      f"CPU in all, the longest {max(g[3] for g in young) * 1000:.1f} ms CPU, "
                      f"over 5 ms: {sum(g[3] > 0.005 for g in young)}, over 10 ms: "
                      f"{sum(g[3] > 0.010 for g in young)}")
            for _at, spent_s, count, kinds, *_ in sorted(inside, key=lambda t: -t[1])[:6]:
                top = "; ".join(f"{kind} x{n} {ms:.0f} ms" for kind, n, ms in kinds[:4])
                gcs = _[1] if len(_) > 1 else None
                extra = f" (collections {gcs[0] * 1000:.0f} ms, {gcs[2]})" if gcs else ""
                print(f"#     {spent_s * 1000:.0f} ms{extra}, {count} callbacks: {top}")
            pieces = [q for q in stats.get("replan_pieces") or () if keep(q[0])]
            for label in sorted({q[1] for q in pieces}):
                mine = sorted((q for q in pieces if q[1] == label), key=lambda q: -q[3])
                print(f"#   {label}: {len(mine)} pieces, the longest: " + ", ".join(
                    f"#{q[2]} {q[3] * 1000:.1f} ms{' (gc)' if q[4] else ''}"
                    for q in mine[:6]))
            guard = sorted((q for q in stats.get("guard_long_pieces") or () if keep(q[0])),
                           key=lambda q: -q[1])
            for _at, spent_s, resumed, stopped, collected in guard[:5]:
                print(f"#   guard piece {spent_s * 1000:.1f} ms{' (gc)' if collected else ''}: "
                      f"{resumed} -> {stopped}")
            for cause, (n, longest_s, cpu_s) in sorted(turn_causes(inside, 0.02).items(),
                                                       key=lambda kv: -kv[1][1])[:12]:
                print(f"#   {n:4d} turns, the longest {longest_s * 1000:6.1f} ms: {cause}")


if __name__ == "__main__":
    main(sys.argv[1:])
