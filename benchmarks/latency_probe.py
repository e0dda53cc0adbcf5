"""Where a MeterValues' send -> CALLRESULT goes (issue 10, s21-p99): time stamps on both sides
of the wire, joined by the call's unique id. Only with SMARTCHARGE_PROBE_LATENCY=1 (the
benchmark passes it on to the server and station processes); a diagnosis, not the default.

Every stamp is `time.perf_counter()` (CLOCK_MONOTONIC on Linux: one clock for every process of
the machine), so a station's stamps and the server's can be subtracted.

Station side (`install_station`): `t0` the station's call began (before the `ocpp` library's
schema check of its request), `write` the frame handed to the socket, `back` the CALLRESULT's
frame read from the socket, `end` the station's outbox resumed with the answer.
Server side (`install_server`): `recv` the frame read from the WebSocket, `admit` its handling
began (after the inbound `TurnBudget`), `submit` the ledger's work handed to the store's writer
thread, `exec` the writer thread ran it, `commit` its group committed (fsync done), `resumed`
the handler resumed on the loop, `out` the CALLRESULT handed to the socket. The store's groups
(`groups`: begin, committed, size) are kept too.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import time

ENV = "SMARTCHARGE_PROBE_LATENCY"

_now = time.perf_counter


def _uid(text: str) -> str | None:
    """The unique id of an OCPP-J frame `[n,"id",...`, or None."""
    if len(text) < 5 or text[3] != '"':
        return None
    end = text.find('"', 4)
    return text[4:end] if end > 0 else None


# ---- server ------------------------------------------------------------------------------

class ServerRecords:
    def __init__(self) -> None:
        self.by_uid: dict[str, dict] = {}
        self.groups: list[tuple[float, float, int]] = []
        # perf-counter second -> our calls sent (SetChargingProfile and the rest: a dispatch
        # round's traffic), and answers to them read
        self.calls_out: dict[int, int] = {}
        self.answers_in: dict[int, int] = {}


def install_server() -> ServerRecords:
    from smartcharge.ocpp import central, server
    from smartcharge.store import SqliteStore

    records = ServerRecords()
    current: contextvars.ContextVar[dict | None] = contextvars.ContextVar("p99", default=None)
    in_group: list[dict] = []
    group_began = [0.0]

    recv, send = server.AiohttpConnection.recv, server.AiohttpConnection.send
    # the loop's turns, counted (wrapped once the loop runs): with the loop thread's CPU
    # clock, what a MeterValues waited through in the server in units the machine's run
    # queue does not inflate - turns and the loop's own CPU between its read and its answer
    turn = [0]

    def count_turns() -> None:
        loop = asyncio.get_running_loop()
        once = loop._run_once

        def run_once() -> None:
            turn[0] += 1
            once()
        loop._run_once = run_once

    async def recv_stamped(self) -> str:
        text = await recv(self)
        if not turn[0]:
            turn[0] = 1
            count_turns()
        if '"MeterValues"' in text[:80]:
            uid = _uid(text)
            if uid is not None:
                records.by_uid[uid] = {"recv": _now(), "recv_cpu": time.thread_time(),
                                       "recv_turn": turn[0]}
        elif not text.startswith("[2,"):
            second = int(_now())
            records.answers_in[second] = records.answers_in.get(second, 0) + 1
        return text

    async def send_stamped(self, text: str) -> None:
        if text.startswith("[2,"):
            second = int(_now())
            records.calls_out[second] = records.calls_out.get(second, 0) + 1
        elif text.startswith("[3,"):
            record = records.by_uid.get(_uid(text) or "")
            if record is not None and "out" not in record:
                record["out"] = _now()
                record["out_cpu"], record["out_turn"] = time.thread_time(), turn[0]
        await send(self, text)

    route = central.CentralSystemBase._route

    async def route_stamped(self, raw_msg: str) -> None:
        record = records.by_uid.get(_uid(raw_msg) or "") if '"MeterValues"' in raw_msg[:80] \
            else None
        if record is not None:
            record["admit"] = _now()
        token = current.set(record)
        try:
            await route(self, raw_msg)
        finally:
            current.reset(token)

    submit = SqliteStore._submit

    async def submit_stamped(self, kind, function, **kwargs):
        record = current.get()
        if record is None or "submit" in record:
            return await submit(self, kind, function, **kwargs)
        record["submit"] = _now()

        def work(*args):
            record["exec"] = _now()
            in_group.append(record)
            return function(*args)
        try:
            return await submit(self, kind, work, **kwargs)
        finally:
            record["resumed"] = _now()

    run_group = SqliteStore._run_group

    def run_group_stamped(self, group):
        group_began[0] = _now()
        return run_group(self, group)

    answer_all = SqliteStore._answer_all

    def answer_all_stamped(self, answers):
        committed = _now()
        for record in in_group:
            record["commit"] = committed
        in_group.clear()
        records.groups.append((group_began[0], committed, len(answers)))
        return answer_all(self, answers)

    # the writer process (s28-writer): `exec` is its group's begin, `commit` its commit, both
    # perf-counter stamps of the writer's own (CLOCK_MONOTONIC: one clock for the machine)
    try:
        from smartcharge.store_writer import WriterProcess
    except ImportError:   # a tree from before the writer process
        WriterProcess = None
    by_op: dict[int, dict] = {}
    if WriterProcess is not None:
        process_run, group_done = WriterProcess.run, WriterProcess._group_done

        async def process_run_stamped(self, op):
            record = current.get()
            if record is None or "submit" in record:
                return await process_run(self, op)
            record["submit"] = _now()
            by_op[id(op)] = record
            try:
                return await process_run(self, op)
            finally:
                record["resumed"] = _now()
                by_op.pop(id(op), None)

        def group_done_stamped(self, began, committed, outcomes):
            for number, *_ in outcomes:
                _, op = self._pending.get(number, (None, None))
                record = by_op.get(id(op)) if op is not None else None
                if record is not None:
                    record["exec"], record["commit"] = began, committed
            records.groups.append((began, committed, len(outcomes)))
            return group_done(self, began, committed, outcomes)

        WriterProcess.run = process_run_stamped
        WriterProcess._group_done = group_done_stamped

    server.AiohttpConnection.recv = recv_stamped
    server.AiohttpConnection.send = send_stamped
    central.CentralSystemBase._route = route_stamped
    SqliteStore._submit = submit_stamped
    SqliteStore._run_group = run_group_stamped
    SqliteStore._answer_all = answer_all_stamped
    return records


# ---- stations ----------------------------------------------------------------------------

class StationRecords:
    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.lag: dict[int, float] = {}      # wall second -> the loop probe's longest lag
        self.busy: dict[int, float] = {}     # wall second -> the loop thread's longest CPU
        self.gc: list[tuple[float, float, float]] = []   # (perf s, wall s, CPU s)


def install_station(records: StationRecords) -> None:
    from smartcharge.sim.connection import WsConnection

    send, recv = WsConnection.send, WsConnection.recv

    async def send_stamped(self, text: str) -> None:
        if '"MeterValues"' in text[:80]:
            self.p99_record = {"uid": _uid(text), "write": _now()}
        await send(self, text)

    async def recv_stamped(self) -> str:
        text = await recv(self)
        record = getattr(self, "p99_record", None)
        if record is not None and text.startswith("[3,") and _uid(text) == record["uid"]:
            record["back"] = _now()
        return text

    WsConnection.send = send_stamped
    WsConnection.recv = recv_stamped
    started = [0.0, 0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started[:] = _now(), time.thread_time()
        else:
            records.gc.append((started[0], _now() - started[0], time.thread_time() - started[1]))
    gc.callbacks.append(on_gc)


def acknowledged(records: StationRecords, station, latency_s: float) -> None:
    """The station's outbox resumed with a MeterValues' answer after `latency_s`."""
    end = _now()
    protocol = getattr(station, "_protocol", None)
    connection = getattr(protocol, "_connection", None)
    record = getattr(connection, "p99_record", None)
    if record is None:
        return
    connection.p99_record = None
    record["t0"], record["end"] = end - latency_s, end
    records.calls.append(record)


async def station_loop_probe(records: StationRecords, probe_s: float = 0.005) -> None:
    loop = asyncio.get_running_loop()
    while True:
        before, cpu_before = loop.time(), time.thread_time()
        await asyncio.sleep(probe_s)
        lag_s = loop.time() - before - probe_s
        busy_s = time.thread_time() - cpu_before
        second = int(time.time())
        records.lag[second] = max(records.lag.get(second, 0.0), lag_s)
        records.busy[second] = max(records.busy.get(second, 0.0), busy_s)


# ---- the breakdown ------------------------------------------------------------------------

STAGES = (   # (name, from, to, side)
    ("station: call begun -> frame written (its schema check, JSON)", "t0", "write"),
    ("wire in: written -> server read it (socket, server loop busy)", "write", "recv"),
    ("server: read -> handling begun (inbound budget)", "recv", "admit"),
    ("server: handling -> handed to the store (parse, checks)", "admit", "submit"),
    ("server: store queue (writer busy with an earlier group)", "submit", "exec"),
    ("server: the group's rows and commit (fsync)", "exec", "commit"),
    ("server: committed -> handler resumed (loop busy, answers' budget)", "commit", "resumed"),
    ("server: resumed -> CALLRESULT written", "resumed", "out"),
    ("wire back: server wrote -> station read it (station loop busy)", "out", "back"),
    ("station: read -> outbox resumed (its queue, the answer's check)", "back", "end"),
)


def joined(calls: list[dict], server: dict[str, dict], window: tuple[float, float]) -> list:
    """The station records in the window (perf-counter seconds) with the server's stamps."""
    rows = []
    for call in calls:
        if not window[0] <= call["t0"] <= window[1]:
            continue
        other = server.get(call["uid"])
        if other is None:
            continue
        row = {**other, **call}
        if all(key in row for _, key_a, key_b in STAGES for key in (key_a, key_b)):
            rows.append(row)
    return rows


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def breakdown_lines(rows: list[dict]) -> list[str]:
    """A table: per stage its median, p99 and mean, and its mean over the slowest 1 % of calls
    (what the p99 is made of)."""
    if not rows:
        return ["# latency probe: no joined records"]
    total = [r["end"] - r["t0"] for r in rows]
    cut = _pct(total, 0.99)
    slow = [r for r, t in zip(rows, total) if t >= cut]
    lines = [f"# where send -> CALLRESULT goes ({len(rows)} MeterValues joined; the slowest "
             f"1 %: {len(slow)} calls, >= {cut * 1000:.0f} ms)",
             "| stage | median | p99 | mean | the slowest 1 %: median | their mean |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, a, b in STAGES:
        values = [r[b] - r[a] for r in rows]
        slow_values = [r[b] - r[a] for r in slow]
        lines.append(f"| {name} | {_pct(values, 0.5) * 1000:.1f} ms | "
                     f"{_pct(values, 0.99) * 1000:.1f} ms | "
                     f"{sum(values) / len(values) * 1000:.1f} ms | "
                     f"{_pct(slow_values, 0.5) * 1000:.1f} ms | "
                     f"{sum(slow_values) / len(slow) * 1000:.1f} ms |")
    slow_total = [r["end"] - r["t0"] for r in slow]
    lines.append(f"| total | {_pct(total, 0.5) * 1000:.1f} ms | {cut * 1000:.1f} ms | "
                 f"{sum(total) / len(total) * 1000:.1f} ms | "
                 f"{_pct(slow_total, 0.5) * 1000:.1f} ms | "
                 f"{sum(slow_total) / len(slow) * 1000:.1f} ms |")
    return lines


def loop_wait_line(rows: list[dict]) -> str:
    """The loop's turns and its thread's CPU from a MeterValues' read to its CALLRESULT
    written (both stamped on the loop thread): what it waited through in the server, counted
    in units a shared machine's run queue does not stretch (the wall-clock columns above
    include the time the OS gave other processes)."""
    rows = [r for r in rows if "out_cpu" in r and "recv_cpu" in r]
    if not rows:
        return "# the loop between read and CALLRESULT: no records"
    cpu = [r["out_cpu"] - r["recv_cpu"] for r in rows]
    turns = [r["out_turn"] - r["recv_turn"] for r in rows]
    total = [r["end"] - r["t0"] for r in rows]
    cut = _pct(total, 0.99)
    slow = [i for i, t in enumerate(total) if t >= cut]
    return (f"# the loop between a MeterValues' read and its CALLRESULT written ({len(rows)}): "
            f"its thread's CPU median {_pct(cpu, 0.5) * 1000:.1f} ms, p99 "
            f"{_pct(cpu, 0.99) * 1000:.1f} ms, mean {sum(cpu) / len(cpu) * 1000:.1f} ms, "
            f"the slowest 1 %'s mean {sum(cpu[i] for i in slow) / len(slow) * 1000:.1f} ms; "
            f"turns median {_pct(turns, 0.5):.0f}, p99 {_pct(turns, 0.99):.0f}, the slowest "
            f"1 %'s mean {sum(turns[i] for i in slow) / len(slow):.1f}; the loop's CPU per turn "
            f"while they waited {sum(cpu) / max(1, sum(turns)) * 1000:.2f} ms")


def _inside_s(span: tuple[float, float], intervals: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(span[1], b) - max(span[0], a)) for a, b in intervals)


def tail_overlap_line(rows: list[dict], collections: list[tuple[float, float]],
                      turns: list[tuple[float, float]]) -> str:
    """How much of the slowest 1 % of calls' time the server spent in a garbage collection
    (any generation) and in the loop's turns over the probe's threshold
    (SMARTCHARGE_PROBE_TURNS), against every call: the collector's and the long stretches'
    share of the tail (intervals in perf-counter seconds; the two overlap when a collection
    ran inside a long turn)."""
    if not rows:
        return "# tail overlap: no joined records"
    total = [r["end"] - r["t0"] for r in rows]
    cut = _pct(total, 0.99)

    def shares(selected: list[dict]) -> str:
        spent = sum(r["end"] - r["t0"] for r in selected)
        in_gc = sum(_inside_s((r["t0"], r["end"]), collections) for r in selected)
        in_turns = sum(_inside_s((r["t0"], r["end"]), turns) for r in selected)
        hit = sum(1 for r in selected if _inside_s((r["t0"], r["end"]), collections) > 0)
        return (f"{in_gc / spent:.1%} of their time in a collection ({hit} of "
                f"{len(selected)} overlap one), {in_turns / spent:.1%} in long turns")
    slow = [r for r, t in zip(rows, total) if t >= cut]
    return (f"# the server's collections and long turns inside the calls: the slowest 1 % "
            f"(>= {cut * 1000:.0f} ms) {shares(slow)}; all calls {shares(rows)}")
