"""python benchmarks/results/s35-stall/windows.py STATS.json [...]: the window's longest
intervals between two wake-ups of the probe (per second: wall lag, the loop thread's CPU), each
with the turns of that second over the probe's threshold (SMARTCHARGE_PROBE_TURNS, 10 ms in
s35-stall's runs) - what the "longest loop stall" of ocpp_load's table is made of; and the
turns that sent 20 or more WebSocket pings (serve_probe's `ping_turns`)."""

import json
import sys
from pathlib import Path


def main(paths: list[str]) -> None:
    for path in paths:
        stats = json.loads(Path(path).read_text())
        start, end = stats["window"]
        turns = stats.get("turns") or []
        busy = dict((int(s), b) for s, b in stats.get("busy") or [])
        lag = dict((int(s), b) for s, b in stats.get("lag") or [])
        print(f"## {path}")
        inside = [s for s in busy if start <= s <= end]
        for second in sorted(inside, key=lambda s: -busy[s])[:4]:
            print(f"# second {second - int(start):3d} of the window: lag {lag.get(second, 0) * 1000:.0f} ms "
                  f"wall, {busy[second] * 1000:.0f} ms CPU between two wake-ups; its turns:")
            for at, spent_s, count, kinds, *rest in sorted(
                    (t for t in turns if int(t[0]) == second), key=lambda t: t[0]):
                gc_cpu = rest[1][0] if len(rest) > 1 else 0.0
                top = "; ".join(f"{k} x{n} {ms:.0f} ms" for k, n, ms in kinds[:3])
                print(f"#   {at - int(at):.3f} {spent_s * 1000:5.1f} ms (gc {gc_cpu * 1000:.1f}), "
                      f"{count} callbacks: {top}")
        pings = stats.get("ping_turns")
        if pings is not None:
            window = [p for p in pings if start <= p[0] <= end]
            most = max(window, key=lambda p: p[1], default=None)
            print(f"# turns sending >= 20 pings: whole run {len(pings)}, the window {len(window)}"
                  + (f"; the most in one turn {most[1]} ({most[2] * 1000:.1f} ms of a "
                     f"{most[3] * 1000:.1f} ms turn)" if most else "")
                  + f"; the whole run's most {max((p[1] for p in pings), default=0)}")


if __name__ == "__main__" and sys.argv[1:2] != ["--rounds"]:
    main(sys.argv[1:])


def round_turns(path: str, over_ms: float = 10.0) -> None:
    """The turns with a dispatch round's step of `over_ms` or more, and the labelled pieces of
    the re-plan and the round (SMARTCHARGE_PROBE_REPLAN_PIECES) that ended inside them."""
    stats = json.loads(Path(path).read_text())
    pieces = stats.get("replan_pieces") or []
    print(f"## {path}: turns with a round's step of {over_ms:.0f} ms or more")
    for at, spent_s, count, kinds, span, *rest in sorted(stats.get("turns") or []):
        mine = [(k, n, ms) for k, n, ms in kinds if k.startswith("task Dispatcher._round")]
        if not mine or mine[0][2] < over_ms:
            continue
        began = at - (span[1] - span[0])
        inside = [p for p in pieces if began - 0.001 <= p[0] <= at + 0.001]
        print(f"#   {spent_s * 1000:.1f} ms turn, round {mine[0][2]:.0f} ms: "
              + "; ".join(f"{p[1]} #{p[2]} {p[3] * 1000:.1f} ms{' (gc)' if p[4] else ''}"
                          for p in inside))


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--rounds":
    for name in sys.argv[2:]:
        round_turns(name)
