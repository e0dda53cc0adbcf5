"""The CPU of a whole command and every process it starts (s31-writer), for the test suite:

    python -m benchmarks.suite_cpu python3 -m pytest -q -n 4 --dist worksteal

Run as a child subreaper (Linux, PR_SET_CHILD_SUBREAPER): every descendant is reaped here,
also those orphaned on the way - the store writers' fork servers, left when their xdist
worker exits - so RUSAGE_CHILDREN counts them; `resource.getrusage` in pytest would miss them.
Prints the total when the command exits and again once its orphans are reaped (at most 2 min).
"""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import sys
import time


def report(began: float, what: str) -> None:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()
    print(f"{what}: wall {time.time() - began:.1f} s, CPU of every descendant reaped: user "
          f"{usage.ru_utime:.1f} s, sys {usage.ru_stime:.1f} s, total "
          f"{usage.ru_utime + usage.ru_stime:.1f} s; load average {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:   # 36 = PR_SET_CHILD_SUBREAPER
        raise SystemExit("PR_SET_CHILD_SUBREAPER: Linux only")
    began = time.time()
    code = subprocess.call(argv)
    report(began, f"exit {code}")
    deadline = time.time() + 120
    while time.time() < deadline:   # orphans still running: a bound, then what was reaped
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.5)
    report(began, "orphans reaped")
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
