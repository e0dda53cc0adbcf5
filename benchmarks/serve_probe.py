"""The benchmarks' server process: the app `smartcharge serve` builds, plus a loop-lag probe.

    python benchmarks/serve_probe.py SITE_FILE STATS_JSON [--uvloop]

Run as a file (not `-m`) so that PYTHONPATH alone decides which smartcharge tree it serves:
the benchmarks measure an older tree with today's probe that way (`--server-tree`).

The probe wakes every PROBE_S and records how late it woke: the longest time the event loop
was blocked, per wall-clock second. At shutdown (SIGTERM) it writes
`{"lag": [[wall_s, max_lag_s], ...]}` to STATS_JSON; the benchmark picks the seconds of its
measurement window. Loopback only; the process ends when the benchmark sends SIGTERM.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

# run as a file, Python puts benchmarks/ first on the path, where benchmarks/optimizer.py would
# hide the `optimizer` package: only PYTHONPATH may say which tree is served
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
    sys.path.append(str(Path(__file__).resolve().parent))   # stage_probe, last

PROBE_S = 0.005


async def probe_loop(lag_by_second: dict[int, float],
                     busy_by_second: dict[int, float] | None = None,
                     instrument_ran: list | None = None) -> None:
    """`lag_by_second`: how late the probe woke (wall time: on a machine shared with other
    work this includes the time the OS gave other processes). `busy_by_second`: the CPU time
    the loop's own thread spent between two wake-ups - what our code held the loop for, an
    upper bound of the longest callback. `instrument_ran`: [True] once this probe's own work
    on the loop ran (the SIGHUP snapshot of the collector, ~120 ms at 5 000 stations): that
    interval is not the server's and is not recorded (s33-stall: it fell in the window's last
    second and was read as the window's longest stall)."""
    loop = asyncio.get_running_loop()
    while True:
        before, cpu_before = loop.time(), time.thread_time()
        await asyncio.sleep(PROBE_S)
        lag_s = loop.time() - before - PROBE_S
        busy_s = time.thread_time() - cpu_before
        if instrument_ran is not None and instrument_ran[0]:
            instrument_ran[0] = False
            continue
        second = int(time.time())
        if lag_s > lag_by_second.get(second, -1.0):
            lag_by_second[second] = lag_s
        if busy_by_second is not None and busy_s > busy_by_second.get(second, -1.0):
            busy_by_second[second] = busy_s


LONG_TURN_S = 0.005   # a turn this long (CPU or wall) is kept one by one (s36-stall)


def record_turn_lengths(loop: asyncio.AbstractEventLoop, by_second: dict[int, list],
                        long_turns: list, over_s: float = LONG_TURN_S,
                        cpu_clock=time.thread_time, wall_clock=time.perf_counter,
                        now=time.time) -> None:
    """Every turn of the loop (one `_run_once`: the young collection at its edge, the poll,
    the ready sockets' callbacks, the due timers, the ready callbacks), measured alone - what
    issue 10's goal ("never blocked for more than 20 ms") asks. s36-stall: the lag probe's
    "between two wake-ups" spans three turns (its timer falls due in turn n, runs in n+1 and
    resumes its task in n+2) and the run queue between them.

    CPU: the loop thread's CPU across the turn. Wall: the turn's span less the time spent
    inside the selector's `select` (waiting for a socket is not a blocked loop; the loop is
    blocked from the poll's return to the next poll). `by_second`: whole wall second ->
    [turns, the most CPU s, the most wall s]; `long_turns`: (wall s, CPU s, wall s, s waiting
    for a CPU) of every turn over `over_s` either way (the wait: the poll's included, ~0 as a
    poll that waits is not runnable). A handful of clock reads a turn and two reads of schedstat (~5 us): nothing is
    wrapped per callback (SMARTCHARGE_PROBE_TURNS's `Handle._run` wrapper adds its own cost
    to every callback; this reading is taken inside it, so it sees that cost when both run).
    Not on uvloop (no selector of Python's to read): nothing is recorded there."""
    selector = getattr(loop, "_selector", None)
    if selector is None or not callable(getattr(loop, "_run_once", None)):
        return
    # the time the loop thread waited for a CPU in each turn (Linux: its schedstat's run
    # delay, ns): a long turn's wall is its CPU, that wait, and the rest - the GIL held by
    # another of the server's threads (the store's, the planner's), page faults
    try:
        schedstat_fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    except OSError:
        schedstat_fd = None

    def run_delay_s() -> float:
        if schedstat_fd is None:
            return 0.0
        return int(os.pread(schedstat_fd, 100, 0).split()[1]) / 1e9
    original_select = selector.select
    in_select = [0.0]

    def select(timeout=None):
        began = wall_clock()
        try:
            return original_select(timeout)
        finally:
            in_select[0] += wall_clock() - began

    selector.select = select
    original_once = loop._run_once

    def run_once() -> None:
        in_select[0] = 0.0
        delay = run_delay_s()
        cpu, wall = cpu_clock(), wall_clock()
        try:
            original_once()
        finally:
            cpu = cpu_clock() - cpu
            wall = wall_clock() - wall - in_select[0]
            delay = run_delay_s() - delay
            at = now()
            entry = by_second.get(int(at))
            if entry is None:
                by_second[int(at)] = [1, cpu, wall]
            else:
                entry[0] += 1
                if cpu > entry[1]:
                    entry[1] = cpu
                if wall > entry[2]:
                    entry[2] = wall
            if cpu > over_s or wall > over_s:
                long_turns.append((at, cpu, wall, delay))

    loop._run_once = run_once


def _callback_kind(handle: asyncio.Handle) -> str:
    callback = handle._callback
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):   # a task's step: name its coroutine
        coro = owner.get_coro()
        name = getattr(coro, '__qualname__', type(coro).__name__)
        if name == "_Metered":   # s25-budget (turn_share.py): the coroutine it runs
            return f"task {getattr(coro.coro, '__qualname__', '?')} (shared)"
        return f"task {name}"
    return getattr(callback, "__qualname__", type(callback).__name__)


def _is_background(handle: asyncio.Handle) -> bool:
    """A step of a task of the site's own work (a coroutine of smartcharge/site/: dispatch,
    set-ups, re-plans, the guard, readings), through the s25-budget share or not: the same
    classification on any tree."""
    owner = getattr(handle._callback, "__self__", None)
    if not isinstance(owner, asyncio.Task):
        return False
    coro = owner.get_coro()
    coro = getattr(coro, "coro", coro) if type(coro).__name__ == "_Metered" else coro
    code = getattr(coro, "cr_code", None)
    return code is not None and "/smartcharge/site/" in code.co_filename


def sample_stacks(thread_id: int, samples, every_s: float = 0.001) -> None:
    """SMARTCHARGE_PROBE_TURN_STACKS (s33-stall): a thread that samples the loop thread's stack
    (every `every_s`, in practice every switch interval: the sampler needs the GIL) into
    `samples` (a bounded deque of (perf_counter s, frames innermost first)), so that a long turn
    can be named by the functions it was in, not only by its callbacks' kinds."""
    import threading

    def name(code) -> str:
        path = code.co_filename
        for package in ("smartcharge", "ocpp", "aiohttp", "jsonschema"):
            if f"/{package}/" in path:
                return f"{package}/{path.rsplit(f'/{package}/', 1)[1]}:{code.co_name}"
        return f"{Path(path).name}:{code.co_name}"

    def run() -> None:
        while True:
            time.sleep(every_s)
            frame = sys._current_frames().get(thread_id)
            chain = []
            while frame is not None and len(chain) < 60:
                chain.append(name(frame.f_code))
                frame = frame.f_back
            samples.append((time.perf_counter(), chain))

    threading.Thread(target=run, daemon=True, name="turn-stacks").start()


def _stacks_in(samples, began: float, ended: float) -> list:
    """The sampled stacks inside one turn, each named by its innermost frame of ours (a module
    of smartcharge/) and the leaf beneath it, counted, the most first."""
    counts: dict[str, int] = {}
    for at, chain in reversed(list(samples)):   # (the sampler appends meanwhile)
        if at < began:
            break
        if at > ended:
            continue
        ours = next((f for f in chain if f.startswith("smartcharge/") and not f.startswith(
            ("smartcharge/turn_share.py", "smartcharge/site/in_steps.py",
             "smartcharge/turns.py"))), None)
        key = f"{ours} < {chain[0]}" if chain else "?"
        counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])[:6]


PINGS_IN_TURN = 20   # a turn sending so many WebSocket pings is recorded (s35-stall)


def trace_turns(loop: asyncio.AbstractEventLoop, turns: list, over_s: float,
                background: list | None = None, ping_turns: list | None = None) -> None:
    """SMARTCHARGE_PROBE_TURNS: every turn of the loop whose callbacks took more than `over_s`
    of the thread's CPU is recorded with its number of callbacks and the CPU per kind of
    callback (the coroutine a task step resumed). A diagnosis (Handle._run is wrapped).

    The collector's CPU inside the turn is counted apart (s31-p99): a collection runs inside
    whichever callback allocated last, so each callback's CPU is given without the collections
    in it, and the turn carries [collections' CPU s, the highest generation, how many] - a
    turn is then attributed to a collection, to a kind of callback, or to both together
    (benchmarks/ocpp_load.py `turn_causes`)."""
    current: dict[str, list] = {}
    bg = [0.0]   # this turn's CPU in steps of the site's own tasks (_is_background)
    collecting = [0.0, -1, 0, 0.0]   # this turn: CPU s, highest generation, count; started
    original_run = asyncio.events.Handle._run

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            collecting[3] = time.thread_time()
        else:
            collecting[0] += time.thread_time() - collecting[3]
            collecting[1] = max(collecting[1], info["generation"])
            collecting[2] += 1

    gc.callbacks.insert(0, on_gc)   # first: freeze_survivors' O(1) freeze is not counted

    def run(handle: asyncio.Handle) -> None:
        started, gc_before = time.thread_time(), collecting[0]
        try:
            original_run(handle)
        finally:
            kind = _callback_kind(handle)
            entry = current.setdefault(kind, [0, 0.0])
            entry[0] += 1
            spent = time.thread_time() - started - (collecting[0] - gc_before)
            entry[1] += spent
            if background is not None and _is_background(handle):
                bg[0] += spent

    asyncio.events.Handle._run = run
    original_once = loop._run_once
    samples = None
    if os.environ.get("SMARTCHARGE_PROBE_TURN_STACKS"):
        import collections
        import threading
        samples = collections.deque(maxlen=20000)
        sample_stacks(threading.get_ident(), samples)

    def run_once() -> None:
        current.clear()
        bg[0] = 0.0
        collecting[:3] = [0.0, -1, 0]
        started, wall = time.thread_time(), time.perf_counter()
        original_once()
        spent = time.thread_time() - started
        pings = current.get("WebSocketResponse._send_heartbeat")
        if pings is not None and pings[0] >= PINGS_IN_TURN and ping_turns is not None:
            # s35-stall: aiohttp's pings falling due together (wall s, pings, their CPU s,
            # the turn's CPU s), whatever the turn's length
            ping_turns.append((time.time(), pings[0], round(pings[1], 6), round(spent, 6)))
        if background is not None and bg[0] > 0:
            # every turn with background work: (wall s, its background CPU, the turn's CPU)
            background.append((time.time(), round(bg[0], 6), round(spent, 6)))
        if spent > over_s:
            top = sorted(current.items(), key=lambda kv: -kv[1][1])[:8]
            turns.append((time.time(), spent, sum(n for n, _ in current.values()),
                          [(kind, n, round(t * 1000, 1)) for kind, (n, t) in top],
                          (wall, time.perf_counter()),   # perf-counter span: latency_probe
                          (round(collecting[0], 6), collecting[1], collecting[2]),
                          [] if samples is None else _stacks_in(samples, wall,
                                                                time.perf_counter())))

    loop._run_once = run_once


def time_replan_pieces(pieces: list) -> None:
    """SMARTCHARGE_PROBE_REPLAN_PIECES (s33-stall): the loop thread's CPU of every piece of a
    re-plan's work on the loop - each `next()` of the picture's generator
    (`plan_inputs.read_steps`: piece 0 the slots, limits and first sessions, the last one the
    reserves after the sessions) and each resumption of `SiteController.replan` (the last one:
    the plan applied and published after its solve) - as (wall s, what, piece, CPU s, a
    collection ran in it). A diagnosis: the share's `long_steps` name where a step ended,
    not which piece of it was long."""
    try:
        from smartcharge.site import controller as controller_module, plan_inputs
    except ImportError:
        return

    def timed_generator(label, gen):
        index = 0
        while True:
            began, young = time.thread_time(), gc.get_count()[0]
            try:
                next(gen)
            except StopIteration as done:
                pieces.append((time.time(), label, -1, time.thread_time() - began,
                               gc.get_count()[0] < young))
                return done.value
            pieces.append((time.time(), label, index, time.thread_time() - began,
                           gc.get_count()[0] < young))
            index += 1
            yield

    read_steps = plan_inputs.read_steps
    plan_inputs.read_steps = lambda c, now: timed_generator("read_steps", read_steps(c, now))
    site_steps = getattr(controller_module, "read_site_steps", None)
    if site_steps is not None:   # s35-stall: the site reading's pieces (`_sample`, the guard)
        controller_module.read_site_steps = lambda *args, **kwargs: timed_generator(
            "site_reading", site_steps(*args, **kwargs))

    class Timed:
        def __init__(self, coro):
            self.coro = coro

        def __await__(self):
            value, error, index = None, None, 0
            while True:
                began, young = time.thread_time(), gc.get_count()[0]
                try:
                    yielded = (self.coro.send(value) if error is None
                               else self.coro.throw(error))
                except StopIteration as done:
                    pieces.append((time.time(), "replan", -1, time.thread_time() - began,
                                   gc.get_count()[0] < young))
                    return done.value
                pieces.append((time.time(), "replan", index, time.thread_time() - began,
                               gc.get_count()[0] < young))
                index += 1
                try:
                    value, error = (yield yielded), None
                except GeneratorExit:
                    self.coro.close()
                    raise
                except BaseException as exc:
                    value, error = None, exc

    replan = controller_module.SiteController.replan

    def timed_replan(self, reasons=None):
        return Timed(replan(self, reasons))
    controller_module.SiteController.replan = timed_replan


def _generator_at(generator) -> str:
    """Where a suspended generator chain stands (s34-stall): function:line of each level."""
    out = []
    while generator is not None and getattr(generator, "gi_frame", None) is not None:
        out.append(f"{generator.gi_frame.f_code.co_name}:{generator.gi_frame.f_lineno}")
        generator = generator.gi_yieldfrom
    return ">".join(out) or "end"


def time_round_pieces(pieces: list) -> None:
    """SMARTCHARGE_PROBE_REPLAN_PIECES (s34-stall): the loop thread's CPU of the pieces of a
    dispatch round's first and post-comparison steps, each call over 1 ms as (wall s, what,
    -1, CPU s, a collection ran in it) in the re-plan pieces' list: the round's end, its
    making, the stations listed, the gates."""
    try:
        from smartcharge.site import dispatch, dispatch_round, gates
    except ImportError:
        return

    def timed(owner, name, label):
        original = getattr(owner, name, None)
        if original is None:
            return

        def wrapper(*args, **kwargs):
            began, young = time.thread_time(), gc.get_count()[0]
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.thread_time() - began
                if spent > 0.001:
                    pieces.append((time.time(), label, -1, spent, gc.get_count()[0] < young))
        setattr(owner, name, wrapper)

    timed(dispatch_round.DispatchRound, "end", "round.end")
    timed(dispatch_round.DispatchRound, "__init__", "round.init")
    timed(dispatch_round.DispatchRound, "_report_when_decreased", "round.report_when")
    timed(dispatch_round.DispatchRound, "_queued", "round.queued")
    timed(dispatch_round, "limited_by_station", "round.limited_by_station")
    timed(gates.DecreaseGates, "__init__", "round.gates_init")
    timed(dispatch.Dispatcher, "_refresh_expiry", "round.refresh_expiry")
    timed(dispatch.Dispatcher, "_work", "round.work")


def time_guard_passes(passes: list, long_pieces: list | None = None) -> None:
    """Each guard pass's (wall s at its end, CPU s of the loop thread in its steps, connectors):
    the guard is a task that yields every few hundred connectors, so its CPU is summed over
    its steps (`SiteGuard._check` is a generator). Older trees without it: nothing.
    `long_pieces` (s34-stall): every `next()` of the pass over 5 ms of CPU, as (wall s, CPU s,
    where it resumed, where it stopped, a collection ran in it)."""
    try:
        from smartcharge.site.guard import SiteGuard
    except ImportError:
        return
    original = getattr(SiteGuard, "_check", None)
    if original is None:
        return

    def timed(self, now):
        steps = original(self, now)
        spent = 0.0
        try:
            while True:
                started, young = time.thread_time(), gc.get_count()[0]
                resumed = _generator_at(steps) if long_pieces is not None else ""
                try:
                    next(steps)
                finally:
                    piece_s = time.thread_time() - started
                    spent += piece_s
                    if long_pieces is not None and piece_s > 0.005:
                        long_pieces.append((time.time(), piece_s, resumed,
                                            _generator_at(steps), gc.get_count()[0] < young))
                yield
        except StopIteration as stop:
            passes.append((time.time(), spent, len(self.topology.refs)))
            return stop.value

    SiteGuard._check = timed


def _share_counters(app) -> dict | None:
    """The s25-budget share's own counters (older trees: None)."""
    from smartcharge.site.setup import CONTROLLER
    share = getattr(app[CONTROLLER], "share", None) if CONTROLLER in app else None
    if share is None:
        return None
    return {"steps": share.steps, "deferred": share.deferred, "turns": share.turns,
            "held_by_turn": getattr(share, "held_by_turn", None),   # s36-stall
            "most_in_turn_ms": [round(x * 1000, 2) for x in share.most_in_turn_s],
            "limit_ms": [x * 1000 for x in share.limit_s],
            "long_steps": sorted(((where, n, round(most * 1000, 1)) for where, (n, most)
                                  in getattr(share, "long_steps", {}).items()),
                                 key=lambda e: -e[1])[:12]}


def _inbound_counters(app) -> dict | None:
    """The server's inbound budget's counters, whole run (s36-stall)."""
    from smartcharge.ocpp.server import INBOUND
    budget = app.get(INBOUND)
    if budget is None:
        return None
    return {name: getattr(budget, name, None)
            for name in ("admitted", "deferred", "most_in_turn", "held", "cpu_s",
                         "held_by_kind")}   # s37-stall: [frames held, their summed wait s]


async def held_each_second(app, held_seconds: list) -> None:
    """s37-stall: the inbound budget's frames held by the turn's CPU, by kind, so far - once a
    second (a copy of a small dict), so the benchmark can tell the set-up's from the window's.
    Trees without `held_by_kind` (main; it is 8fab2ee's, not landed): nothing."""
    from smartcharge.ocpp.server import INBOUND
    budget = app.get(INBOUND)
    if budget is None or not hasattr(budget, "held_by_kind"):
        return
    while True:
        await asyncio.sleep(1.0)
        held_seconds.append((time.time(), {kind: list(count) for kind, count
                                           in budget.held_by_kind.items()}))


def install_window_signals(loop: asyncio.AbstractEventLoop, stats_path: str,
                           profile_path: str | None) -> None:
    """SIGUSR1: write `STATS_JSON.threads` (each thread's native id -> its Python name: the OS
    names them all "python", and the benchmark reads their CPU from /proc), and with
    `profile_path` (SMARTCHARGE_PROBE_CPROFILE=FILE) start cProfile on the loop thread (thread
    CPU time as its clock: what the loop itself spent); SIGUSR2 stops it and writes FILE."""
    import cProfile
    import threading
    profile = cProfile.Profile(time.thread_time) if profile_path else None

    def start() -> None:   # runs on the loop thread
        with open(stats_path + ".threads", "w") as out:
            json.dump({str(t.native_id): t.name for t in threading.enumerate()}, out)
        if profile is not None:
            profile.enable()

    def stop() -> None:
        if profile is not None:
            profile.disable()
            profile.dump_stats(profile_path)

    loop.add_signal_handler(signal.SIGUSR1, start)
    loop.add_signal_handler(signal.SIGUSR2, stop)


def collector_now(top: int = 15) -> dict:
    """What the collector holds outside the permanent generation, by generation and by type,
    and what a middle and then a full collection cost now (thread CPU and wall ms): a
    middle-generation collection comes every YOUNG_EVERY x MIDDLE_EVERY net allocations,
    minutes apart at 5 000 stations, so a 90 s window seldom holds one; this says what one
    would cost at the window's end, with the stations still connected. Run once, after the
    window (SIGHUP from benchmarks/ocpp_load.py): the collections change what follows."""
    sizes, kinds = [], {}
    for generation in range(3):
        objects = gc.get_objects(generation)
        sizes.append(len(objects))
        for obj in objects:
            name = type(obj).__qualname__
            kinds[name] = kinds.get(name, 0) + 1
        del objects
    costs, garbage = {}, {}
    gc.set_debug(gc.DEBUG_SAVEALL)   # what the cycles are made of: kept in gc.garbage
    try:
        for generation in (1, 2):
            wall_s, cpu_s = time.perf_counter(), time.thread_time()
            found = gc.collect(generation)
            costs[generation] = {"cpu_ms": (time.thread_time() - cpu_s) * 1000,
                                 "wall_ms": (time.perf_counter() - wall_s) * 1000,
                                 "collected": found}
    finally:
        gc.set_debug(0)
    for obj in gc.garbage:
        name = type(obj).__qualname__
        garbage[name] = garbage.get(name, 0) + 1
    gc.garbage.clear()
    return {"sizes": sizes, "frozen": gc.get_freeze_count(), "costs": costs,
            "kinds": sorted(kinds.items(), key=lambda kv: -kv[1])[:top],
            "garbage": sorted(garbage.items(), key=lambda kv: -kv[1])[:top]}


def count_store_calls() -> tuple[dict[str, int], list]:
    """Every piece of work handed to the store, by kind (s29-boot): `op NAME` for a `StoreOp`
    (the writer process where there is one), `closure QUALNAME` for a closure (the writer
    thread: one between ops makes the two writers take turns, store_order.py). Any tree."""
    from smartcharge import store as store_module
    calls: dict[str, int] = {}
    stores: list = []
    original = store_module.SqliteStore.run

    async def counted(self, work):
        if not stores:
            stores.append(self)
        function = getattr(work, "function", None)
        if type(work).__name__ == "StoreOp":
            name = "op " + (function if isinstance(function, str)
                            else getattr(function, "__name__", "?"))
        else:
            name = "closure " + getattr(work, "__qualname__", type(work).__name__)
        calls[name] = calls.get(name, 0) + 1
        return await original(self, work)
    store_module.SqliteStore.run = counted
    return calls, stores


def main(argv: list[str]) -> int:
    site_file, stats_path = argv[0], argv[1]
    use_uvloop = "--uvloop" in argv[2:]
    from aiohttp import web

    from smartcharge.app import create_app
    from smartcharge.config import load_site

    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in filter(None, os.environ.get("SMARTCHARGE_PROBE_DEBUG", "").split(",")):
        logging.getLogger(name).setLevel(logging.DEBUG)   # e.g. smartcharge.site.controller
    site = load_site(site_file)
    app = create_app(site)
    store_calls, stores = count_store_calls()
    if "--stages" in argv[2:]:
        import stage_probe   # benchmarks/, beside this file
        stage_probe.install(app)
    latency = None
    if os.environ.get("SMARTCHARGE_PROBE_LATENCY"):   # benchmarks/latency_probe.py
        import latency_probe   # benchmarks/, beside this file
        latency = latency_probe.install_server()
    if os.environ.get("SMARTCHARGE_PROBE_NO_CHECKPOINT"):   # an experiment (s26-p99): no
        # automatic checkpoint inside the writer's commits (the WAL only grows): do the
        # store's long groups go with it?
        from smartcharge.store import SqliteStore
        connect = SqliteStore._connect

        def connect_without_checkpoints(self) -> None:
            connect(self)
            self._db.execute("PRAGMA wal_autocheckpoint = 0")
        SqliteStore._connect = connect_without_checkpoints
    lag_by_second: dict[int, float] = {}
    held_seconds: list = []   # s37-stall: (second, the inbound budget's held_by_kind then)
    busy_by_second: dict[int, float] = {}
    # (wall s, generation, pause s, CPU s of the collecting thread: at a load average of 3-8
    # the wall pause includes what the OS gave other processes; objects it found in garbage
    # cycles)
    gc_pauses: list[tuple[float, int, float, float]] = []
    gc_started = [0.0, 0.0]

    gc_debug = bool(os.environ.get("SMARTCHARGE_PROBE_GCDEBUG"))   # what a collection saw
    gc_seen: list = []
    turns: list = []   # SMARTCHARGE_PROBE_TURNS: the long turns of the loop
    background_turns: list = []   # and every turn's CPU in the site's own tasks
    ping_turns: list = []   # and every turn that sent many WebSocket pings (s35-stall)
    turn_seconds: dict[int, list] = {}   # every turn's length, per second (s36-stall)
    long_turns: list = []   # and each turn over LONG_TURN_S
    window_end: list = []   # SIGHUP: the collector at the window's end (collector_now)
    instrument_ran = [False]   # the probe's own work held the loop since its last wake-up
    guard_passes: list = []
    guard_long_pieces: list = []
    time_guard_passes(guard_passes, guard_long_pieces
                      if os.environ.get("SMARTCHARGE_PROBE_REPLAN_PIECES") else None)
    replan_pieces: list = []
    if os.environ.get("SMARTCHARGE_PROBE_REPLAN_PIECES"):
        time_replan_pieces(replan_pieces)
        time_round_pieces(replan_pieces)
    gc_sizes: list = [None, None]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            if gc_debug:   # costly (lists every young object): only when asked for
                young = [gc.get_objects(g) for g in range(info["generation"] + 1)]
                kinds: dict[str, int] = {}
                for objects in young:
                    for obj in objects:
                        name = type(obj).__qualname__
                        kinds[name] = kinds.get(name, 0) + 1
                gc_sizes[0] = [len(objects) for objects in young]
                gc_sizes[1] = sorted(kinds.items(), key=lambda kv: -kv[1])[:25]
                del young
            gc_started[:] = time.perf_counter(), time.thread_time()
        else:
            pause_s = time.perf_counter() - gc_started[0]
            gc_pauses.append((time.time(), info["generation"], pause_s,
                              time.thread_time() - gc_started[1], info["collected"]))
            if gc_debug:
                gc_seen.append((time.time(), info["generation"], pause_s, gc_sizes[0],
                                info["collected"], gc_sizes[1]))

    gc.callbacks.append(on_gc)
    try:    # where `smartcharge serve` takes it from (older trees: in app, or none)
        from smartcharge.gc_serving import tune_gc_for_serving as tune
    except ImportError:
        import smartcharge.app
        tune = getattr(smartcharge.app, "tune_gc_for_serving", None)
    try:   # as `smartcharge serve` does (s35-stall; older trees: at each schema's first use)
        from smartcharge.ocpp.fast_schema import compile_all
    except ImportError:
        compile_all = None
    if compile_all is not None:
        compile_all()
    if tune is not None:
        tune()    # as `smartcharge serve` does
    try:
        from smartcharge.gc_serving import freeze_after_storms
    except ImportError:   # older trees
        freeze_after_storms = None
    if freeze_after_storms is not None and not os.environ.get("SMARTCHARGE_PROBE_NO_FREEZE"):
        freeze_after_storms(app)   # as `smartcharge serve` does
    if os.environ.get("SMARTCHARGE_PROBE_FREEZE_YOUNG"):   # an experiment (s31-p99): what
        # survives a young collection frozen too, so no middle collection traverses it again
        def freeze_young(phase: str, info: dict) -> None:
            if phase == "stop" and info["generation"] == 0:
                gc.freeze()
        gc.callbacks.append(freeze_young)
    inbound_cpu_s = os.environ.get("SMARTCHARGE_PROBE_INBOUND_CPU_S")   # s36-stall, on a
    if inbound_cpu_s:   # tree whose TurnBudget has `cpu_s` (29e2d67, not landed): the turn's
        # CPU past which no frame is let in (but 8); a number or "off"
        from smartcharge.ocpp.server import INBOUND
        app[INBOUND].cpu_s = None if inbound_cpu_s == "off" else float(inbound_cpu_s)
    min_per_turn = os.environ.get("SMARTCHARGE_PROBE_INBOUND_MIN_PER_TURN")   # s37-stall, on
    if min_per_turn:   # a tree with `cpu_s` (8fab2ee, not landed): frames let in a turn whatever
        # it spent (8)
        from smartcharge.ocpp.server import INBOUND
        app[INBOUND].min_per_turn = int(min_per_turn)
    if os.environ.get("SMARTCHARGE_PROBE_ANSWERS_HELD"):   # s37-stall, on 8fab2ee's tree (not
        # landed): the stations' answers held by the turn's CPU like their own calls (s36's B,
        # with the counts by kind)
        import smartcharge.ocpp.central as central
        central.ANSWER = "(answers held too)"
    share_cpu_s = os.environ.get("SMARTCHARGE_PROBE_SHARE_TURN_CPU_S")   # s36-stall, on a
    if share_cpu_s:   # tree whose TurnShare has `turn_cpu_s` (29e2d67, not landed): the turn's
        # CPU past which no lane of the share takes a step (but its first); a number or "off"
        from smartcharge.turn_share import TurnShare
        share_init = TurnShare.__init__

        def init_share(self, *args, **kwargs) -> None:
            share_init(self, *args, **kwargs)
            self.turn_cpu_s = None if share_cpu_s == "off" else float(share_cpu_s)
        TurnShare.__init__ = init_share
    per_turn = os.environ.get("SMARTCHARGE_PROBE_PER_TURN")   # an experiment (s31-p99):
    if per_turn:   # inbound frames let in, and the store's callers resumed, per turn (32)
        from smartcharge.store import SqliteStore
        from smartcharge.turns import TurnBudget
        from smartcharge.ocpp.server import INBOUND
        app[INBOUND] = TurnBudget(int(per_turn))
        SqliteStore.ANSWERS_PER_TURN = int(per_turn)
    switch_s = os.environ.get("SMARTCHARGE_PROBE_SWITCH_S")   # e.g. "0.001": an experiment
    if switch_s:
        sys.setswitchinterval(float(switch_s))
    threshold = os.environ.get("SMARTCHARGE_PROBE_GC")   # e.g. "700,10,10": an experiment
    if threshold:
        gc.set_threshold(*(int(x) for x in threshold.split(",")))

    async def probe_ctx(app: web.Application):
        slow_s = float(os.environ.get("SMARTCHARGE_PROBE_SLOW_S", "0"))
        if slow_s > 0:   # asyncio's debug mode names every callback that ran longer (costly)
            loop = asyncio.get_running_loop()
            loop.set_debug(True)
            loop.slow_callback_duration = slow_s
            logging.getLogger("asyncio").setLevel(logging.WARNING)
        # s36-stall: every turn's own length, always (before trace_turns: inside its wrapper)
        record_turn_lengths(asyncio.get_running_loop(), turn_seconds, long_turns)
        if os.environ.get("SMARTCHARGE_PROBE_TURNS"):
            trace_turns(asyncio.get_running_loop(), turns,
                        float(os.environ["SMARTCHARGE_PROBE_TURNS"]), background_turns,
                        ping_turns)
        # benchmarks/msg_cpu.py: SIGUSR1 at its window's start (the loop thread under cProfile
        # if asked), SIGUSR2 at its end
        install_window_signals(asyncio.get_running_loop(), stats_path,
                               os.environ.get("SMARTCHARGE_PROBE_CPROFILE"))
        def snapshot() -> None:
            window_end.append(collector_now())
            instrument_ran[0] = True   # the probe's next interval held this: not the server's
            with open(stats_path + ".collector", "w") as out:   # the benchmark waits for it
                json.dump(window_end[-1], out)
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, snapshot)
        young_every_s = float(os.environ.get("SMARTCHARGE_PROBE_YOUNG_EVERY_S", "0"))
        if young_every_s > 0:   # an experiment (s33-stall): a young collection on a timer
            # too, so the young generation cannot grow for long while old objects die (the
            # threshold counts net allocations: 20-66 ms young pauses at 5 000 stations)
            async def young_on_a_timer() -> None:
                while True:
                    await asyncio.sleep(young_every_s)
                    if gc.isenabled() and gc.get_count()[0] > 0:
                        gc.collect(0)
            window_end_tasks = [asyncio.create_task(young_on_a_timer())]   # noqa: F841 (kept)
        task = asyncio.create_task(probe_loop(lag_by_second, busy_by_second, instrument_ran),
                                   name="loop-lag-probe")
        held_task = asyncio.create_task(held_each_second(app, held_seconds),
                                        name="inbound-held-probe")
        yield
        task.cancel()
        held_task.cancel()
        from smartcharge.site.setup import CONTROLLER
        stats = app[CONTROLLER].stats if CONTROLLER in app else None
        # the stations are gone: what cycles among frozen objects did their connections
        # leave? (a full collection with and without the permanent generation)
        # measured as the collector would find them: the serving process's freeze of what
        # survives a middle collection (gc_serving.freeze_survivors) would hide them
        gc.callbacks[:] = [cb for cb in gc.callbacks
                           if getattr(cb, "__name__", "") != "freeze_survivors"]
        started_s = time.thread_time()   # what the next generation-1 collection would cost
        gc.collect(1)
        cycles = {"gen1_cpu_ms": (time.thread_time() - started_s) * 1000,
                  "frozen": gc.get_freeze_count(), "collected": gc.collect()}
        gc.unfreeze()
        started_s = time.perf_counter()
        gc.set_debug(gc.DEBUG_SAVEALL)   # what the frozen cycles were made of
        try:
            cycles["collected_after_unfreeze"] = gc.collect()
        finally:
            gc.set_debug(0)
        cycles["full_collection_ms"] = (time.perf_counter() - started_s) * 1000
        kinds: dict[str, int] = {}
        for obj in gc.garbage:
            kinds[type(obj).__qualname__] = kinds.get(type(obj).__qualname__, 0) + 1
        gc.garbage.clear()
        cycles["frozen_cycle_kinds"] = sorted(kinds.items(), key=lambda kv: -kv[1])[:15]
        cycles["adapters_alive"] = sum(1 for obj in gc.get_objects()
                                       if type(obj).__name__.startswith("CentralSystemV"))
        with open(stats_path, "w") as out:
            json.dump({"lag": sorted(lag_by_second.items()),
                       "busy": sorted(busy_by_second.items()),
                       "loop": type(asyncio.get_running_loop()).__module__,
                       "replans": getattr(stats, "replans", None),
                       "profiles_sent": getattr(stats, "profiles_sent", None),
                       "store_calls": store_calls,
                       "writer_writes": getattr(getattr(stores[0], "writer_process", None),
                                                "writes", None) if stores else None,
                       "gc": gc_pauses, "guard": guard_passes, "gc_seen": gc_seen,
                       "replan_pieces": replan_pieces,
                       "guard_long_pieces": guard_long_pieces,
                       "cycles": cycles, "turns": turns,
                       "background_turns": background_turns,
                       "ping_turns": ping_turns,
                       "turn_seconds": sorted(turn_seconds.items()),
                       "long_turns": long_turns,
                       "share": _share_counters(app),
                       "inbound": _inbound_counters(app),
                       "inbound_held_seconds": held_seconds,
                       "collector_at_window_end": window_end[0] if window_end else None,
                       "clock_offset_s": time.time() - time.perf_counter(),
                       "latency": None if latency is None else {
                           "by_uid": latency.by_uid, "groups": latency.groups,
                           "calls_out": latency.calls_out,
                           "answers_in": latency.answers_in}}, out)

    app.cleanup_ctx.append(probe_ctx)
    loop_factory = None
    if use_uvloop:
        import uvloop   # optional: only when asked for
        loop_factory = uvloop.new_event_loop
    elif not os.environ.get("SMARTCHARGE_PROBE_PLAIN_LOOP"):
        try:   # the loop `smartcharge serve` runs on (s33-stall; older trees: asyncio's)
            from smartcharge.serving_loop import serving_loop_factory
            loop_factory = serving_loop_factory()
        except ImportError:
            pass
    if loop_factory is not None:
        events_per_turn = os.environ.get("SMARTCHARGE_PROBE_EVENTS_PER_TURN")
        if events_per_turn:   # an experiment (s35-stall): ready sockets taken per turn
            loop = loop_factory(events_per_turn=int(events_per_turn))
        else:
            loop = loop_factory()
        asyncio.set_event_loop(loop)
        web.run_app(app, host=site.server.host, port=site.server.port, backlog=4096,
                    print=None, loop=loop)
    else:
        web.run_app(app, host=site.server.host, port=site.server.port, backlog=4096,
                    print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
