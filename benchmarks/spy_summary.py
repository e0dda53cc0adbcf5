"""Where a server's samples went, from py-spy's collapsed stacks (`py-spy record --threads -f
raw`, e.g. `python -m benchmarks.ocpp_load ... --py-spy FILE`): per thread, then per part of
the server (the outermost frame of a loop callback's own stack - below asyncio's `Handle._run` -
matched against PARTS in their order: inclusive, so a MeterValues' handling that runs the schema
check counts as the MeterValues), then by the leaf's module (where the CPU itself was). s26-p99.

py-spy samples wall time: a thread that is runnable but waiting for a CPU is sampled where the
kernel took the CPU from it, which is most often on the way back from a system call - so on a
loaded machine the leaves over-count lines that make one (`time.thread_time()` in
`turn_share.py`, epoll in `selectors.py`, SQLite's calls in `store.py`). For the loop thread's
own CPU use `ocpp_load --cprofile` (thread CPU time as its clock).

    python -m benchmarks.spy_summary FILE [--top 15]
"""

from __future__ import annotations

import argparse
import gzip
import re
from collections import Counter

# (label, a pattern matched against the frames "function (file:line)" of a callback's stack):
# the first label in this order whose pattern any frame matches wins, so the specific parts
# come before the catch-alls (a MeterValues' frame read by aiohttp counts as the MeterValues)
PARTS = (
    ("the store's writer thread: the group's SQL and commit", r"SqliteStore\._writer"),
    ("garbage collection (gc callbacks)", r"freeze_survivors|collector"),
    ("guard (site/guard)", r"site/guard"),
    ("re-plan (optimizer, site/planning, plan inputs)", r"optimizer/|site/plan|site/replan|"
                                                        r"site/inputs|problem"),
    ("dispatch: rounds, sends, profiles (site/dispatch, sending, pacing, gates)",
     r"site/(dispatch|sending|pacing|gates|edges|slots|station_control|installed)"),
    ("our calls out and their answers (ocpp port, library call)", r"station_port|port_base|"
                                                                  r"ChargePoint\.call|_send"),
    ("inbound frames: routing, schema, adapter (MeterValues; answers to our calls)", r"_route|route_message|"
                                                                    r"adapter|central\.py"),
    ("site controller: events, readings, state", r"site/"),
    ("aiohttp: frames read and written", r"aiohttp/"),
    ("asyncio: the loop itself (select, callbacks)", r"asyncio/"),
)


def summarize(path: str, top: int) -> list[str]:
    threads: Counter = Counter()
    parts: Counter = Counter()
    leaves: Counter = Counter()
    total = 0
    for line in (gzip.open(path, "rt") if path.endswith(".gz") else open(path)):
        stack, _, count = line.rstrip().rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        # "thread (ID): NAME" with --threads; the store's writer names itself store:PATH
        thread = frames[0].split(": ", 1)[-1] if frames[0].startswith("thread") else "?"
        threads["store writer" if thread.startswith("store:") else thread] += n
        # a callback's own frames: those below the loop's last dispatch (Handle._run; a
        # task's step runs inside it), else the whole stack (the writer thread)
        runs = [i for i, frame in enumerate(frames) if frame.startswith("Handle._run ")]
        own = frames[runs[-1] + 1:] if runs else frames
        if re.search(r"selectors\.py|select \(", frames[-1]):
            part = "idle: the loop waiting in epoll"
        elif "turn_share.py" in frames[-1]:   # the share's own accounting around a step
            part = "the share's step accounting (turn_share.py, its thread_time() reads)"
        elif not own:
            part = "asyncio: the loop itself (select, callbacks)"
        else:
            text = ";".join(own)
            part = next((label for label, pattern in PARTS if re.search(pattern, text)),
                        "other")
        parts[part] += n
        leaf = re.search(r"\(([^:()]+)", frames[-1])
        leaves[leaf.group(1) if leaf else frames[-1]] += n
    out = [f"# {total} samples (of threads doing something: py-spy leaves idle ones out)",
           "| thread | share |", "|---|---:|"]
    out += [f"| {name} | {n / total:.1%} |" for name, n in threads.most_common(6)]
    out += ["", "| part of the server | share |", "|---|---:|"]
    out += [f"| {name} | {n / total:.1%} |" for name, n in parts.most_common()]
    out += ["", "| where the CPU was (the leaf's file) | share |", "|---|---:|"]
    out += [f"| {name} | {n / total:.1%} |" for name, n in leaves.most_common(top)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    print("\n".join(summarize(args.file, args.top)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
