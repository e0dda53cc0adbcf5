"""Control latency: from a utility's demand-response event that lowers the cap (HTTP POST,
starting now) to the last station's acknowledged SetChargingProfile that brings the site under it,
split into stages.

    python -m benchmarks.control_latency --connectors 10 100 1000 --repeats 3

The server (`benchmarks/serve_probe.py --stages`: the app `smartcharge serve` builds, with the
site controller, and `stage_probe.py` timing its re-plans and dispatch rounds) runs in its own
process; the simulated OCPP 1.6J stations (two connectors each, a car charging on every
connector, the cap binding) run in `--station-procs` further processes
(`benchmarks/load_stations.py`), so the benchmark measures the server. Each repeat posts a new
event at half the cap and waits for the dispatch round of the re-plan it caused; the stages:

- request: POST until its 201 or the re-plan it caused began, whichever came first (the
  event is stored, and a re-plan asked for, before the 201; since session 25 the 201 waits for
  the round's decreases to be answered - `site/applied.py` - so its own time is a column apart,
  "201 after");
- re-plan: from then until the plan is made (the controller's coalescing wait, building the
  problem, the solve, the check, bindings and idle shares); solve and check also on their own;
- sends: from the plan until the last station's decreases began going out;
- answers: from then until the last station's decreases were acknowledged.

Also the last plan acknowledged: the site is under the new limit then; the fail-safe defaults that
follow the event (for if the server vanished) may be acknowledged after it. And the event loop
thread's own CPU time from the re-plan's start to the last acknowledgement: the server's work for
the event, which the machine's load does not stretch (the wall-clock stages do).

And the rounds begun while the event's ran (each newer round ends the event's: what of it had
not begun is left to the newer one).

And the requests the server sent from the re-plan's start to the last acknowledgement (every
kind: the plans, the fail-safe defaults that follow the event, idle shares), with the loop
thread's CPU and the server process's CPU (every thread, from the POST) per request: the
per-profile cost, which the machine's load stretches far less than the wall-clock stages. Below
the table, per repeat: those requests by purpose and stack level ("TxDefaultProfile/0": the
fail-safe defaults that follow the event, "TxProfile/1": plans), and the loop thread's CPU split
into the re-plan's and the round's (from the plan to the last acknowledgement).

Total = DR POST -> last decrease acknowledged, the old table's measure (every profile an event
that halves the cap needs is a decrease). Then the event is cancelled and the next repeat waits
for that round too. Every run stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.load_stations import PASSWORD, TAG, end_station_procs

REPO = Path(__file__).resolve().parent.parent
UTILITY = "bench-utility-token"
PER_CONNECTOR_CAP_W = 7_360.0          # the cap binds: every car wants 11 kW
SAMPLE_INTERVAL_S = 60                 # real seconds between a station's meter samples


def site_toml(connectors: int, port: int, database: str) -> str:
    stations = max(1, connectors // 2)
    lines = ['[site]', 'name = "control latency benchmark"', '',
             '[server]', 'host = "127.0.0.1"', f'port = {port}', f'database = "{database}"',
             'heartbeat_interval_s = 600', 'call_timeout_s = 30', 'ping_interval_s = 60', '',
             '[grid]', f'limit_w = {connectors * PER_CONNECTOR_CAP_W:.0f}', '']
    feeders = max(1, stations // 50)
    for f in range(feeders):
        lines += ['[[circuits]]', f'id = "feeder-{f}"', 'parent = "grid"', '']
    lines += ['[auth]', f'id_tags = ["{TAG}"]', '',
              '[session_defaults]', 'energy_wh = 60000', 'dwell_s = 36000', '',
              '[api]', f'utility_tokens = ["{UTILITY}"]', '']
    for index in range(stations):
        lines += ['[[stations]]', f'id = "LAT{index:05d}"', f'password = "{PASSWORD}"',
                  f'circuit = "feeder-{index % feeders}"', '']
        for connector_id in (1, 2)[: 1 if connectors == 1 else 2]:
            lines += ['[[stations.connectors]]', f'id = {connector_id}', 'phases = 3',
                      'max_current_a = 32', '']
    return "\n".join(lines)


def proc_cpu_s(pid: int) -> float:
    """A process's CPU time so far (user + system, every thread), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s(pid: int) -> float:
    """The CPU so far of a process's live descendants (the server's store writer process, since
    session 29: its commits are the server's work too, on the same 2 cores; since s31-writer
    a child of the server's fork server, smartcharge/store_forks.py)."""
    total = 0.0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for task in tasks:   # the fork server is started by a thread of its own
        try:
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except OSError:
            continue
        total += sum(proc_cpu_s(int(child)) + children_cpu_s(int(child)) for child in children)
    return total


async def sample_cpu(samples: list, server_pid: int, station_pids: list[int]) -> None:
    """(time, server CPU, stations' CPU, the server's children's CPU - its store writer) every
    20 ms until cancelled (ticks are 10 ms)."""
    while True:
        samples.append((time.time(), proc_cpu_s(server_pid),
                        sum(proc_cpu_s(pid) for pid in station_pids),
                        children_cpu_s(server_pid)))
        await asyncio.sleep(0.02)   # a sampling period, not a wait for a condition


def cpu_between(samples: list, start: float, end: float) -> tuple[float, float, float]:
    """(server, stations, the server's writer process) CPU from the last sample at or before
    `start` to the first at or after `end` (so a little more than between them: 20 ms at each
    side)."""
    before = max((s for s in samples if s[0] <= start), default=samples[0])
    after = min((s for s in samples if s[0] >= end), default=samples[-1])
    return after[1] - before[1], after[2] - before[2], after[3] - before[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0



def ocpp_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def stages(http, base: str, after: float = 0.0, parts: str | None = None) -> dict:
    """The probe's record from `after` on; `parts` ("replans,rounds"): only those lists (an
    older probe answers every list, which the callers read the same)."""
    params = {"after": str(after)}
    if parts is not None:
        params["parts"] = parts
    async with http.get(f"{base}/bench/stages", params=params) as resp:
        return await resp.json()


async def wait_round(http, base: str, after: float, reason: str, timeout_s: float) -> dict:
    """The re-plan (started after `after`, for `reason`) and the dispatch round it led to,
    once that round is over: (replan, round, decreases of the round)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # while the round runs, the small lists only (s31-dr: the round's decreases and
        # requests so far, every 50 ms, were the server's loop encoding JSON for us); the
        # round is recorded at its end, so its decreases are all there once it shows
        record = await stages(http, base, after - 1.0, "replans,rounds")
        replan = next((r for r in record["replans"] if r["start"] >= after
                       and any(x.startswith(reason) for x in r["reasons"])), None)
        if replan is not None:
            rounds = [r for r in record["rounds"] if r["start"] >= replan["end"] - 0.001]
            if rounds:
                first = rounds[0]
                record = await stages(http, base, first["start"], "decreases")
                downs = [d for d in record["decreases"]
                         if first["start"] <= d[0] <= first["end"]]
                return {"replan": replan, "round": first, "decreases": downs,
                        "probe_cpu_s": record.get("probe_cpu_s", 0.0)}
        await asyncio.sleep(0.05)    # polling the server's record; nothing to wait on here
    raise TimeoutError(f"no dispatch round after a {reason} re-plan within {timeout_s} s")


async def quiet(http, base: str, quiet_s: float, at_most_s: float) -> None:
    """Wait until the server has neither re-planned nor dispatched for `quiet_s`, or for at most
    `at_most_s`: the closed loop (a car drawing less than it was given) keeps re-planning a
    busy site now and then, and a DR event must get through that too."""
    deadline = time.monotonic() + at_most_s
    while time.monotonic() < deadline:
        # what started in the last minutes: a round is over long before
        record = await stages(http, base, time.time() - 300.0, "replans,rounds")
        ends = [r.get("end", time.time()) for r in record["replans"] + record["rounds"]]
        if ends and time.time() - max(ends) > quiet_s:
            return
        await asyncio.sleep(0.2)    # polling the server's record; nothing to wait on here


async def run_size(connectors: int, repeats: int, workdir: Path, args) -> dict:
    import aiohttp

    port = free_port()
    site_file = workdir / f"site-{connectors}.toml"
    site_file.write_text(site_toml(connectors, port, str(workdir / f"db-{connectors}.sqlite")))
    server_log = open(workdir / f"server-{connectors}.log", "wb")
    server = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "serve_probe.py"), str(site_file),
         str(workdir / f"stats-{connectors}.json"), "--stages"],
        stdout=server_log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": args.server_tree})
    procs = []
    base = f"http://127.0.0.1:{port}"
    result = {"connectors": connectors, "rows": []}
    try:
        deadline = time.monotonic() + 60
        while not _port_open(port):
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the server did not start")
            await asyncio.sleep(0.1)
        parts = min(args.station_procs, max(1, connectors // 2))
        # the stations' code from --station-tree (an older tree measures what the stations cost
        # before a change): `-m` looks in the working directory first, so it is the tree too
        env = {**os.environ, "PYTHONPATH": args.station_tree}
        # a real-time clock in the stations (a sample a minute): their profiles' times are ours
        procs = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.load_stations", str(site_file),
            f"ws://127.0.0.1:{port}/ocpp", str(part), str(parts), str(SAMPLE_INTERVAL_S), "300",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
            cwd=args.station_tree,
            limit=1 << 26) for part in range(parts)]
        from benchmarks.ocpp_load import read_json
        await asyncio.gather(*(read_json(p, "ready", 300) for p in procs))
        headers = {"Authorization": f"Bearer {UTILITY}"}
        url = f"{base}/api/demand-response/events"
        async with aiohttp.ClientSession() as http:
            # each station's first samples (one a minute) teach the server its cars' phases,
            # and each such re-plan (`session:MeterSampled`) began a newer round that overtook
            # the event's: at load 6-13 in every repeat, with 130-340 of 500 stations left in
            # the event's round (s26-dr). The events begin once a meter interval has passed.
            settle_until = time.monotonic() + SAMPLE_INTERVAL_S + 5.0
            while time.monotonic() < settle_until:
                await asyncio.sleep(0.5)   # the stations' sampling period, not a condition
            await quiet(http, base, 3.0, 60)
            for repeat in range(repeats):
                now = datetime.now(UTC)
                event_id = f"bench-{repeat}"
                body = {"id": event_id, "start": ocpp_time(now),
                        "end": ocpp_time(now + timedelta(hours=2)),
                        "limit_w": connectors * PER_CONNECTOR_CAP_W / 2}
                samples: list[tuple[float, float, float]] = []
                sampler = asyncio.ensure_future(sample_cpu(samples, server.pid,
                                                           [p.pid for p in procs]))
                # the probe's own loop CPU so far (older probes: none): its polls during the
                # round are the benchmark's work on the loop it measures (s31-dr)
                probe_before = (await stages(http, base, time.time(), "rounds")).get(
                    "probe_cpu_s", 0.0)
                await asyncio.sleep(0)
                t0 = time.time()
                async with http.post(url, json=body, headers=headers) as resp:
                    if resp.status != 201:
                        raise RuntimeError(f"DR event refused: {resp.status} {await resp.text()}")
                t1 = time.time()
                found = await wait_round(http, base, t0, "dr:", 120)
                asked = min(t1, found["replan"]["start"])
                sampler.cancel()
                downs = found["decreases"]
                last_start = max((d[0] for d in downs), default=found["replan"]["end"])
                last_end = max((d[1] for d in downs), default=found["replan"]["end"])
                # the site under the new limit: the last plan (or idle share) acknowledged; the
                # fail-safe defaults that follow the event may come after (older records: all)
                plans_end = max((d[1] for d in downs if len(d) < 4 or d[3] == "plans"),
                                default=last_end)
                # the loop thread's CPU from the re-plan's start to the last decrease's answer:
                # the server's own work for the event, whatever the machine's load
                cpu_end = max((d[5] for d in downs if len(d) > 5), default=None)
                loop_cpu = (cpu_end - found["replan"]["loop_cpu"]
                            if cpu_end is not None and "loop_cpu" in found["replan"] else 0.0)
                # the stations' CPU (their processes share the server's 2 cores) and the
                # server's (every thread), from the POST to the last acknowledgement: the
                # stations' part is the benchmark's own cost, not the server's
                server_cpu, stations_cpu, writer_cpu = cpu_between(samples, t0, last_end)
                # per stage of the round (s30-dr), the loop thread's CPU and the requests sent:
                # the plans (from the plan to the last plan acknowledged: the site under the
                # limit) and the fail-safe defaults after them (to the last acknowledgement)
                plans_cpu = max((d[5] for d in downs if len(d) > 6 and d[3] == "plans"),
                                default=None)
                plans_sent = max((d[6] for d in downs if len(d) > 6 and d[3] == "plans"),
                                 default=None)
                # the requests the server sent from the re-plan's start to the last decrease's
                # answer (every kind: plans, fail-safe defaults, idle shares; older probes: 0)
                sent_end = max((d[6] for d in downs if len(d) > 6), default=None)
                requests = (sent_end - found["replan"]["sent"]
                            if sent_end is not None and "sent" in found["replan"] else 0)
                replan_cpu = (found["replan"]["loop_cpu_end"] - found["replan"]["loop_cpu"]
                              if "loop_cpu_end" in found["replan"] else 0.0)
                stage_cpu = None
                if plans_cpu is not None and "loop_cpu_end" in found["replan"]:
                    stage_cpu = (plans_cpu - found["replan"]["loop_cpu_end"], cpu_end - plans_cpu,
                                 plans_sent - found["replan"]["sent"], sent_end - plans_sent)
                result["rows"].append({
                    "stage_cpu": stage_cpu, "writer_cpu": writer_cpu,
                    "probe_cpu": found["probe_cpu_s"] - probe_before,
                    "thread": tuple(found["replan"].get(k, 0.0)
                                    for k in ("build_s", "solve_s", "check_s", "finish_s")),
                    "loop_cpu": loop_cpu, "replan_cpu": replan_cpu, "stations_cpu": stations_cpu, "requests": requests,
                    "server_cpu": server_cpu,
                    # (a tree whose 201 waits for the round: the re-plan began before it)
                    "request": asked - t0, "replan": found["replan"]["end"] - asked,
                    "answered": t1 - t0,
                    "solve": found["replan"]["solve_s"], "check": found["replan"]["check_s"],
                    "sends": last_start - found["replan"]["end"], "answers": last_end - last_start,
                    "total": last_end - t0, "plans_total": plans_end - t0,
                    "stations": len({d[4] for d in downs}) if downs and len(downs[0]) > 4
                    else len(downs),
                    "profiles": sum(d[2] for d in downs)})
                # SMARTCHARGE_PROBE_TURNS (serve_probe.py): the long turns of the loop from
                # the POST to the last acknowledgement, read from its record at shutdown
                result.setdefault("windows", []).append((t0, last_end))
                t2 = time.time()
                async with http.delete(f"{url}/{event_id}", headers=headers) as resp:
                    assert resp.status == 200
                await wait_round(http, base, t2, "dr-cancel:", 120)
                # rounds begun while the event's ran (each ended it: what of it had not begun
                # was left to the newer one), counted once they are over (recorded at their end)
                event_round = found["round"]
                record = await stages(http, base, event_round["start"])
                result["rows"][-1]["newer_rounds"] = sum(
                    1 for r in record["rounds"]
                    if event_round["start"] < r["start"] <= event_round["end"])
                # what asked for the re-plans begun while the event's round ran (the reasons'
                # kinds, counted): what overtook it
                kinds: dict[str, int] = {}
                for r in record["replans"]:
                    if event_round["start"] < r["start"] <= event_round["end"]:
                        for reason in r["reasons"]:
                            kind = ":".join(reason.split(":")[:2])
                            kinds[kind] = kinds.get(kind, 0) + 1
                result["rows"][-1]["newer_reasons"] = kinds
                # the requests from the re-plan's start to the last acknowledgement, by purpose
                # and stack level (older probes: none)
                sent: dict[str, int] = {}
                for at, what in record.get("sent", ()):
                    if found["replan"]["start"] <= at <= last_end:
                        sent[what] = sent.get(what, 0) + 1
                result["rows"][-1]["sent_kinds"] = sent
                await quiet(http, base, 2.0, 15)
    finally:
        await end_station_procs(procs)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        server_log.close()
    stats_file = workdir / f"stats-{connectors}.json"
    if os.environ.get("SMARTCHARGE_PROBE_TURNS") and stats_file.exists():
        stats = json.loads(stats_file.read_text())
        result["turns"], result["busy"] = stats.get("turns") or [], stats.get("busy") or []
    return result


def print_dr_turns(result: dict) -> None:
    """SMARTCHARGE_PROBE_TURNS: the turns of the loop over 20 ms of its thread's CPU inside
    the DR events' windows (the POST -> the last acknowledgement), by cause (ocpp_load's
    attribution), and the loop's longest own CPU between two probe wake-ups in them."""
    from benchmarks.ocpp_load import turn_causes
    windows = result.get("windows") or []
    turns = [t for t in result.get("turns", ()) if any(a <= t[0] <= b + 1 for a, b in windows)]
    busy = [cpu_s for second, cpu_s in result.get("busy", ())
            if any(a - 1 <= second <= b + 1 for a, b in windows)]
    print(f"#   the DR windows: {len(turns)} turns over the probe's threshold; the loop's own "
          f"CPU between two probe wake-ups, the longest {max(busy, default=0) * 1000:.0f} ms")
    for _, spent_s, count, kinds, *_ in sorted(turns, key=lambda t: -t[1])[:5]:
        top = "; ".join(f"{kind} x{n} {ms:.0f} ms" for kind, n, ms in kinds[:3])
        print(f"#     {spent_s * 1000:.0f} ms, {count} callbacks: {top}")
    for cause, (n, longest_s, cpu_s) in sorted(turn_causes(turns, over_s=0.02).items(),
                                               key=lambda kv: -kv[1][0]):
        print(f"#     {n:4d} over 20 ms, the longest {longest_s * 1000:5.1f} ms: {cause}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connectors", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--station-procs", type=int, default=2)
    parser.add_argument("--server-tree", default=str(REPO),
                        help="the smartcharge tree the server runs (to measure an older one)")
    parser.add_argument("--station-tree", default=str(REPO),
                        help="the smartcharge tree the station processes run (the simulator "
                             "and benchmarks/load_stations.py; to measure an older one)")
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    print(f"# machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; server tree {args.server_tree}; "
          f"station tree {args.station_tree}; "
          f"{args.station_procs} station processes")
    print("| connectors | stations sent decreases | profiles | request | re-plan (solve, check) "
          "| sends | answers | 201 after | DR POST -> last ack, median [s] | min | max "
          "| DR POST -> last plan ack (site under the limit), median [s] "
          "| loop thread's CPU, re-plan -> last ack, median [s] "
          "| CPU from the POST until the round was seen over: server, stations [s] "
          "| requests sent, re-plan -> last ack | per request: loop CPU, server CPU [ms] "
          "| rounds begun during the event's | load average |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="smartcharge-latency-") as tmp:
        for n in args.connectors:
            r = asyncio.run(run_size(n, args.repeats, Path(tmp), args))
            rows = r["rows"]

            def med(key):
                return statistics.median(row[key] for row in rows)

            def per(key):   # median over the repeats of the CPU per request sent
                each = [row[key] / row["requests"] * 1e3 for row in rows if row["requests"]]
                return f"{statistics.median(each):.3f}" if each else "-"
            totals = [row["total"] for row in rows]
            print(f"| {n}{' ' + args.label if args.label else ''} | {med('stations'):.0f} | "
                  f"{med('profiles'):.0f} | {med('request'):.3f} | {med('replan'):.3f} "
                  f"({med('solve'):.3f}, {med('check'):.3f}) | {med('sends'):.3f} | "
                  f"{med('answers'):.3f} | {med('answered'):.3f} | {statistics.median(totals):.3f} | {min(totals):.3f} "
                  f"| {max(totals):.3f} | {med('plans_total'):.3f} | {med('loop_cpu'):.3f} "
                  f"| {med('server_cpu'):.2f}, {med('stations_cpu'):.2f} "
                  f"| {med('requests'):.0f} | {per('loop_cpu')}, {per('server_cpu')} "
                  f"| {', '.join(str(row.get('newer_rounds', '-')) for row in rows)} "
                  f"| {' '.join(f'{x:.1f}' for x in os.getloadavg())} |",
                  flush=True)
            kinds = [row.get("sent_kinds") for row in rows if row.get("sent_kinds")]
            print("#   the loop thread's CPU [s], re-plan / from the plan to the last ack, per "
                  "repeat: " + ", ".join(
                      f"{row.get('replan_cpu', 0.0):.3f} / "
                      f"{row['loop_cpu'] - row.get('replan_cpu', 0.0):.3f}" for row in rows),
                  flush=True)
            staged = [row for row in rows if row.get("stage_cpu")]
            if staged:
                print("#   per stage, the loop thread's CPU [s] (requests sent): plans to the last "
                      "plan ack / the fail-safe defaults after it; the writer process's CPU from "
                      "the POST to the last ack [s], per repeat: " + ", ".join(
                          f"{row['stage_cpu'][0]:.3f} ({row['stage_cpu'][2]}) / "
                          f"{row['stage_cpu'][1]:.3f} ({row['stage_cpu'][3]}); "
                          f"{row['writer_cpu']:.2f}" for row in staged), flush=True)
                print("#   the probe's own loop CPU (its /bench/stages answers) from the POST "
                      "until the round was seen over [s], per repeat: " + ", ".join(
                          f"{row.get('probe_cpu', 0.0):.3f}" for row in rows), flush=True)
                print("#   the re-plan's worker thread, build / solve / check / finish (bindings, "
                      "idle shares) [s], per repeat: " + ", ".join(
                          " / ".join(f"{x:.3f}" for x in row["thread"]) for row in staged),
                      flush=True)
            if kinds:
                print(f"#   requests re-plan -> last ack, by purpose/stack level: {kinds}",
                      flush=True)
            if r.get("turns") is not None:
                print_dr_turns(r)
            reasons = [row.get("newer_reasons") for row in rows if row.get("newer_reasons")]
            if reasons:
                print(f"#   re-plans begun during the event's round, by reason: {reasons}",
                      flush=True)


if __name__ == "__main__":
    main()
