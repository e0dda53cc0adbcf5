"""How many of the server's calls to stations were in flight during each DR round, and how
busy the event loop thread was meanwhile (s39-dr).

    SMARTCHARGE_PROBE_CALLS=/tmp/calls.jsonl python -m benchmarks.control_latency ...
    python -m benchmarks.calls_inflight /tmp/calls.jsonl

`stage_probe.py` writes one line per call, `[sent, answered, loop CPU at sent, loop CPU at
answered, station, action]` (wall-clock and thread-CPU seconds). Calls are grouped into rounds
by gaps of more than `--gap-s` with nothing in flight; for each round of at least `--min-calls`:
its span, the loop thread's CPU over it (from the calls' own readings, so the loop's work just
before the first call and after the last answer is not in it), the mean number in flight, and
each call's time in flight (p10 / p50 / p90). A loop busy for much less than the span while
the calls in flight stay under the sending slots' number means the round waited on the
window (SEND_CONCURRENCY), not on the server's CPU."""

from __future__ import annotations

import argparse
import json
import statistics


def rounds(calls: list, gap_s: float) -> list[list]:
    calls = sorted(calls)
    out: list[list] = []
    current: list = []
    last_end = None
    for call in calls:
        if current and call[0] - last_end > gap_s:
            out.append(current)
            current = []
        current.append(call)
        last_end = call[1] if last_end is None or not current[:-1] else max(last_end, call[1])
    if current:
        out.append(current)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path")
    parser.add_argument("--gap-s", type=float, default=0.3)
    parser.add_argument("--min-calls", type=int, default=1000)
    args = parser.parse_args()
    with open(args.path) as lines:
        calls = [json.loads(line) for line in lines if line.strip()]
    print("| calls | span [s] | loop CPU [s] | loop busy | mean in flight | in flight p10 / p50 / "
          "p90 [ms] |")
    print("|---:|---:|---:|---:|---:|---|")
    for part in rounds(calls, args.gap_s):
        if len(part) < args.min_calls:
            continue
        began = min(c[0] for c in part)
        ended = max(c[1] for c in part)
        span_s = ended - began
        cpu_s = max(c[3] for c in part) - min(c[2] for c in part)
        flights = [c[1] - c[0] for c in part]
        p = statistics.quantiles(flights, n=10)
        print(f"| {len(part)} | {span_s:.3f} | {cpu_s:.3f} | {cpu_s / span_s:.0%} | "
              f"{sum(flights) / span_s:.1f} | {p[0] * 1e3:.0f} / {p[4] * 1e3:.0f} / "
              f"{p[8] * 1e3:.0f} |")


if __name__ == "__main__":
    main()
