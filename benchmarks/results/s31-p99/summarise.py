"""s31-p99: one line per run of the kept stats (SMARTCHARGE_BENCH_STATS) and the printed output:
turns over 20 ms CPU in the window by cause (benchmarks/ocpp_load.turn_causes), the collections
by generation, the p99 and the load.  python summarise.py NAME...  (reads /tmp/p99-NAME.json
and load-5000-NAME.txt beside this file; stats-NAME.json.gz first)"""
import gzip
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from benchmarks.ocpp_load import turn_causes  # noqa: E402


def short(cause: str) -> str:
    return (cause.replace("task RequestHandler._handle_request", "handler steps")
            .replace("collection gen", "gc").replace(" (shared)", "").replace("task ", ""))


for name in sys.argv[1:]:
    text = (Path(__file__).parent / f"load-5000-{name}.txt").read_text()
    kept = Path(__file__).parent / f"stats-{name}.json.gz"   # the probe's record, cut down
    stats = json.loads(gzip.open(kept, "rt").read() if kept.exists()
                       else Path(f"/tmp/p99-{name}.json").read_text())
    w = stats["window"]
    span_min = (w[1] - w[0]) / 60
    row = next(line for line in text.splitlines() if line.startswith("| 5000"))
    cells = [c.strip() for c in row.split("|")]
    start = re.search(r"# start (\S+) load (\S+)", text)
    end = re.search(r"# end (\S+) load (\S+)", text)
    plans = re.search(r"holding a plan it accepted: (\d+) of", text)
    inside = [t for t in stats["turns"] if w[0] <= t[0] <= w[1]]
    causes = turn_causes(inside, 0.02)
    n_over = sum(n for n, _, _ in causes.values())
    gcs = [e for e in stats["gc"] if w[0] <= e[0] <= w[1]]
    by_gen = {}
    for e in gcs:
        n, most, over = by_gen.get(e[1], (0, 0.0, 0))
        by_gen[e[1]] = (n + 1, max(most, e[3]), over + (e[3] > 0.02))
    print(f"## {name}: {start.group(1)}-{end.group(1)} load {start.group(2)} -> {end.group(2)}; "
          f"plans at the window {plans.group(1) if plans else '?'}/5000; p50 {cells[5]}, p99 "
          f"{cells[6]}, stall (window / boot) {cells[11]}; turns over 20 ms CPU in the window "
          f"{n_over} ({n_over / span_min:.0f} a minute), the longest "
          f"{max((t[1] for t in inside), default=0) * 1000:.0f} ms; collections in the window "
          f"{len(gcs)}, {sum(e[3] for e in gcs) * 1000:.0f} ms CPU; "
          + ", ".join(f"gen {g}: {n} (longest {m * 1000:.0f} ms CPU, {o} over 20 ms)"
                      for g, (n, m, o) in sorted(by_gen.items())))
    for cause, (n, longest, cpu) in sorted(causes.items(), key=lambda kv: -kv[1][0]):
        print(f"   {n:4d} ({n / span_min:5.1f}/min) longest {longest * 1000:5.1f} ms: {short(cause)}")
