"""The test suite's CPU per test: a pytest plugin, and the table it leads to.

    python3 -m pytest -q -n 4 --dist worksteal -p benchmarks.suite_cpu_per_test     # SUITE_CPU_DIR=...
    python3 -m benchmarks.suite_cpu_per_test [DIR]                                    # the tables

Per test (setup, call and teardown): the worker's own CPU (RUSAGE_SELF) and its reaped
children's (RUSAGE_CHILDREN: a `serve` subprocess counts with the store writer it reaped), the
wall time, and every child the worker reaped with its own CPU and command line (`os.waitpid`
is taken through `os.wait4` while the plugin is loaded). CPU seconds hardly move with the
machine's load; wall times do. A module- or session-scoped fixture is counted in the test that
sets it up or tears it down; a child reaped in a later test is counted there. Collection and
the workers' start are not in any test (the suite's total minus the sum of the tests).
One JSON line per test in DIR/<worker>.jsonl (default .pytest_cache/suite-cpu)."""

from __future__ import annotations

import collections
import glob
import json
import os
import resource
import subprocess
import sys
import time

_DIR = os.environ.get("SUITE_CPU_DIR", os.path.join(".pytest_cache", "suite-cpu"))
_reaped: list = []              # (pid, command line, CPU s) reaped during the current test
_commands: dict[int, str] = {}  # pid -> command line, from Popen


def _cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _install() -> None:
    """Every child's CPU as it is reaped (asyncio's watchers and Popen both call waitpid)."""
    def waitpid(pid, options):
        got, status, usage = os.wait4(pid, options)
        if got:
            _reaped.append((got, _commands.get(got, "?"), usage.ru_utime + usage.ru_stime))
        return got, status

    popen_init = subprocess.Popen.__init__

    def init(self, args, *more, **kw):
        popen_init(self, args, *more, **kw)
        _commands[self.pid] = (args if isinstance(args, str)
                               else " ".join(str(a) for a in args))[:200].replace("\n", " ")

    os.waitpid = waitpid
    subprocess.Popen.__init__ = init


def pytest_configure(config) -> None:
    _install()


try:
    import pytest

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        _reaped.clear()
        self0, kids0, wall0 = (_cpu_s(resource.RUSAGE_SELF), _cpu_s(resource.RUSAGE_CHILDREN),
                               time.monotonic())
        yield
        row = {"id": item.nodeid, "self": _cpu_s(resource.RUSAGE_SELF) - self0,
               "children": _cpu_s(resource.RUSAGE_CHILDREN) - kids0,
               "wall": time.monotonic() - wall0, "kids": list(_reaped)}
        os.makedirs(_DIR, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(os.path.join(_DIR, f"{worker}.jsonl"), "a") as out:
            out.write(json.dumps(row) + "\n")
except ImportError:   # the report below needs no pytest
    pass


def _kind(command: str) -> str:
    if "store_writer" in command:
        return "store writer"
    if "smartcharge serve" in command or "smartcharge demo" in command:
        return "smartcharge " + command.split("smartcharge ", 1)[1].split(" ")[0]
    if "kill_point" in command:
        return "tests/kill_point.py"
    return " ".join([command.split(" ")[0].rsplit("/", 1)[-1]] + command.split(" ")[1:3])


def report(directory: str, top: int = 25) -> None:
    rows = [json.loads(line) for name in glob.glob(os.path.join(directory, "*.jsonl"))
            for line in open(name)]
    own, kids = sum(r["self"] for r in rows), sum(r["children"] for r in rows)
    print(f"{len(rows)} tests: {own + kids:.1f} s CPU = {own:.1f} in the workers + "
          f"{kids:.1f} in reaped children; wall summed over workers {sum(r['wall'] for r in rows):.0f} s")
    by_kind, count = collections.Counter(), collections.Counter()
    for r in rows:
        for _, command, cpu in r["kids"]:
            by_kind[_kind(command)] += cpu
            count[_kind(command)] += 1
    print("\n| children reaped by a worker | CPU s | processes |\n|---|---:|---:|")
    for kind, cpu in by_kind.most_common(8):
        print(f"| {kind} | {cpu:.1f} | {count[kind]} |")
    files: dict = collections.defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    for r in rows:
        f = files[r["id"].split("::")[0]]
        f[0] += r["self"]; f[1] += r["children"]; f[2] += r["wall"]; f[3] += 1
    print("\n| file | tests | CPU s (worker + children) | wall s |\n|---|---:|---:|---:|")
    for name, (s, c, w, n) in sorted(files.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))[:top]:
        print(f"| {name} | {n} | {s + c:.1f} ({s:.1f} + {c:.1f}) | {w:.0f} |")
    print("\n| test | CPU s (worker + children) | wall s |\n|---|---:|---:|")
    for r in sorted(rows, key=lambda r: -(r["self"] + r["children"]))[:top]:
        print(f"| {r['id']} | {r['self'] + r['children']:.1f} ({r['self']:.1f} + "
              f"{r['children']:.1f}) | {r['wall']:.0f} |")


if __name__ == "__main__":
    report(sys.argv[1] if len(sys.argv) > 1 else _DIR)
