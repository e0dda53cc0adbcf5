"""How many of the server's calls to stations were in flight during each DR round, and how
busy the event loop thread was meanwhile (s39-dr).

    SMARTCHARGE_PROBE_CALLS=/tmp/calls.jsonl python -m benchmarks.control_latency ...
    python -m benchmarks.calls_inflight /tmp/calls.jsonl

`stage_probe.py` writes one line per call, `[sent, answered, loop CPU at sent, loop CPU at
answered, station, action]` (wall-clock and thread-CPU seconds), and two kinds of marks: a
station's later fail-safe defaults waiting for every decrease of the round to hold its slot
("after-decreases": began, ended) and a round's comparisons ending ("compared"). Calls are
grouped into rounds by gaps of more than `--gap-s` with nothing in flight; for each round of at
least `--min-calls`: its span, the loop thread's CPU over it (from the calls' own readings, so
the loop's work just before the first call and after the last answer is not in it), the mean
number in flight, each call's time in flight (p10 / p50 / p90), the longest stretch with
nothing in flight (and when it began), and when the comparisons ended and the later defaults
were let go (seconds from the round's first call). A loop busy for much less than the span
while the calls in flight stay under the sending slots' number means the round waited on the
window (SEND_CONCURRENCY), not on the server's CPU."""

from __future__ import annotations

import argparse
import json
import statistics

MARKS = ("after-decreases", "compared")


def rounds(calls: list, gap_s: float) -> list[list]:
    out: list[list] = []
    current: list = []
    last_end = 0.0
    for call in sorted(calls):
        if current and call[0] - last_end > gap_s:
            out.append(current)
            current = []
        last_end = call[1] if not current else max(last_end, call[1])
        current.append(call)
    if current:
        out.append(current)
    return out


def idle_stretch(part: list) -> tuple[float, float]:
    """(the longest time with no call in flight inside the round, when it began)."""
    events = sorted([(c[0], 1) for c in part] + [(c[1], -1) for c in part],
                    key=lambda e: (e[0], -e[1]))
    flying, empty_since, best = 0, None, (0.0, 0.0)
    for t, step in events:
        if flying == 0 and empty_since is not None and step == 1:
            best = max(best, (t - empty_since, empty_since))
        flying += step
        if flying == 0:
            empty_since = t
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path")
    parser.add_argument("--gap-s", type=float, default=0.3)
    parser.add_argument("--min-calls", type=int, default=1000)
    args = parser.parse_args()
    with open(args.path) as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    calls = [row for row in rows if row[5] not in MARKS]
    print("| calls | span [s] | loop CPU [s] | loop busy | mean in flight | in flight p10 / p50 / "
          "p90 [ms] | longest with none in flight [s] (at) | comparisons ended | later "
          "defaults let go |")
    print("|---:|---:|---:|---:|---:|---|---|---:|---|")
    for part in rounds(calls, args.gap_s):
        if len(part) < args.min_calls:
            continue
        began = min(c[0] for c in part)
        ended = max(c[1] for c in part)
        span_s = ended - began
        cpu_s = max(c[3] for c in part) - min(c[2] for c in part)
        flights = [c[1] - c[0] for c in part]
        p = statistics.quantiles(flights, n=10)
        idle_s, idle_at = idle_stretch(part)
        compared = [r[0] - began for r in rows
                    if r[5] == "compared" and began - 1.0 <= r[0] <= ended]
        let_go = [r[1] - began for r in rows
                  if r[5] == "after-decreases" and began - 1.0 <= r[0] <= ended]
        print(f"| {len(part)} | {span_s:.3f} | {cpu_s:.3f} | {cpu_s / span_s:.0%} | "
              f"{sum(flights) / span_s:.1f} | {p[0] * 1e3:.0f} / {p[4] * 1e3:.0f} / "
              f"{p[8] * 1e3:.0f} | "
              + (f"{idle_s:.3f} ({idle_at - began:.3f})" if idle_s > 0 else "none") + " | "
              + (f"{compared[0]:.3f}" if compared else "-") + " | "
              + (f"{min(let_go):.3f}-{max(let_go):.3f} ({len(let_go)})" if let_go else "-")
              + " |")


if __name__ == "__main__":
    main()
