"""Which decreases a station's increases wait for (site/gates.py): the same answer as asking
every pair of stations whether they share a limited node, gathered once per node."""

import asyncio
from datetime import UTC, datetime, timedelta

from smartcharge.site.gates import DecreaseGates

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
# nodes: 0 the grid, 1 feeder A, 2 feeder B; 10+ the stations' own nodes
LIMITED = {"A1": {10, 1, 0}, "A2": {11, 1, 0}, "B1": {12, 2}, "B2": {13, 2}, "C": {14}}


async def test_a_station_waits_only_for_the_decreases_under_its_limited_nodes():
    loop = asyncio.get_running_loop()
    done = {sid: loop.create_future() for sid in ("A1", "B1", "C")}   # those that decrease
    gates = DecreaseGates(done, LIMITED)
    a2, b2, c = (asyncio.ensure_future(gates.wait(s)) for s in ("A2", "B2", "C"))
    done["B1"].set_result((True, T0 + timedelta(seconds=3)))
    await asyncio.wait_for(b2, 5)            # B2 shares feeder B with B1 only
    assert b2.result() == ([], T0 + timedelta(seconds=3))
    assert not a2.done() and not c.done()    # A2 waits for A1 (feeder A, grid); C for itself
    done["C"].set_result((True, T0 + timedelta(seconds=1)))
    assert await asyncio.wait_for(c, 5) == ([], T0 + timedelta(seconds=1))
    assert not a2.done()
    done["A1"].set_result((False, T0 + timedelta(seconds=2)))
    assert await asyncio.wait_for(a2, 5) == (["A1"], T0 + timedelta(seconds=2))
    gates.cancel()


async def test_a_station_without_dependencies_does_not_wait():
    loop = asyncio.get_running_loop()
    gates = DecreaseGates({"B1": loop.create_future()}, LIMITED)
    assert await asyncio.wait_for(gates.wait("A1"), 5) == ([], None)
    gates.cancel()


async def test_under_the_grid_every_failed_decrease_is_named_once_and_the_latest_counts():
    loop = asyncio.get_running_loop()
    limited = {f"S{i}": {100 + i, 0} for i in range(50)}
    done = {sid: loop.create_future() for sid in limited}
    gates = DecreaseGates(done, limited)
    waiting = [asyncio.ensure_future(gates.wait(sid)) for sid in limited]
    for i, future in enumerate(done.values()):
        future.set_result((i % 10 != 3, T0 + timedelta(seconds=i)))
    results = await asyncio.wait_for(asyncio.gather(*waiting), 5)
    assert all(r == (["S3", "S13", "S23", "S33", "S43"], T0 + timedelta(seconds=49))
               for r in results)
    gates.cancel()


async def test_a_waiter_given_up_leaves_the_decreases_and_the_other_waiters_alone():
    """An increase whose wait is cancelled (a newer plan came) must not cancel the decreases'
    futures it shared with other stations: the others still get their answer, and the
    decrease can still report its outcome."""
    loop = asyncio.get_running_loop()
    done = {"A1": loop.create_future()}
    gates = DecreaseGates(done, LIMITED)
    given_up, other = (asyncio.ensure_future(gates.wait(s)) for s in ("A2", "A1"))
    await asyncio.sleep(0)
    given_up.cancel()
    await asyncio.gather(given_up, return_exceptions=True)
    assert not done["A1"].cancelled()
    done["A1"].set_result((True, T0))
    assert await asyncio.wait_for(other, 5) == ([], T0)
    gates.cancel()


async def test_many_waiters_on_one_node_wake_over_several_turns_of_the_loop(monkeypatch):
    """With the grid cap binding every increasing station waits on the grid's decreases; they
    woke in one turn of the loop (~100 ms at 5 000 stations, issue 10), and a station's message
    read meanwhile waited behind all of them. Now at most a batch wakes per turn (a ticker
    callback counts the turns), and every waiter gets its answer."""
    from smartcharge.site import pacing
    monkeypatch.setattr(pacing, "PACE_BATCH", 10)
    loop = asyncio.get_running_loop()
    limited = {f"S{i}": {1000 + i, 0} for i in range(300)}
    done = {"S0": loop.create_future()}   # one station decreases under the grid
    gates = DecreaseGates(done, limited)
    turn = [0]
    ticking = [True]

    def tick():
        turn[0] += 1
        if ticking[0]:
            loop.call_soon(tick)

    woken_in: dict[int, int] = {}   # turn -> waiters woken in it

    async def increase(sid: str):
        result = await gates.wait(sid)
        woken_in[turn[0]] = woken_in.get(turn[0], 0) + 1
        return result

    waiting = [asyncio.ensure_future(increase(sid)) for sid in limited]
    await asyncio.sleep(0)
    loop.call_soon(tick)
    done["S0"].set_result((True, T0))
    results = await asyncio.wait_for(asyncio.gather(*waiting), 5)
    ticking[0] = False
    assert all(r == ([], T0) for r in results)
    assert sum(woken_in.values()) == len(limited)
    assert max(woken_in.values()) <= 10, woken_in
    gates.cancel()


def test_the_limited_nodes_of_every_station_computed_once_per_circuit_are_each_stations_own():
    """`limited_by_station` computes the circuits above once per circuit stations hang from
    (per station it was ~15-25 ms CPU in one step of the loop at 5 000 stations, issue 10):
    the same sets as walking up from each station, with and without a root limit and a DR
    event on a circuit without a limit of its own."""
    import numpy as np

    from smartcharge.model import Circuit, Connector, Site, Station
    from smartcharge.site.dispatch_round import limited_by_station
    from smartcharge.site.topology import SiteTopology
    site = Site(name="tree", circuits=(
        Circuit("grid", None), Circuit("a", "grid", limit_w=50_000), Circuit("a1", "a"),
        Circuit("b", "grid"), Circuit("b1", "b", limit_w=20_000)),
        stations=tuple(Station(f"S{i}", circuit, (Connector(1),))
                       for i, circuit in enumerate(["grid", "a", "a1", "a1", "b", "b1", "b1"])))
    topo = SiteTopology(site)
    ids = [s.station_id for s in site.stations]

    def walked(sid, root_limited, dr_nodes):
        out = {topo.station_node[sid]}
        chain = topo.ancestors(topo.station_node[sid])
        out.update(n for n in chain if np.isfinite(topo.static_limit_w[n])
                   or np.isfinite(topo.static_limit_a[n]))
        if root_limited:
            out.add(0)
        out.update(dr_nodes.intersection(chain))
        return out

    b = topo.node_ids.index("b")
    for root_limited in (False, True):
        for dr_nodes in (set(), {b}):
            got = limited_by_station(topo, ids, root_limited, dr_nodes)
            assert got == {sid: walked(sid, root_limited, dr_nodes) for sid in ids}


async def test_cancelled_gates_are_freed_without_the_cycle_collector():
    """A round's gates cancelled with decreases still pending and increases still waiting
    are freed by reference counting alone: the serving process freezes whatever survives a
    middle collection (gc_serving.freeze_survivors), and a garbage cycle frozen is never
    collected - a round's gates, futures and sets were one (~4 000 objects at 5 000
    stations, s23-gc)."""
    import gc
    import weakref

    from smartcharge.site.pacing import Pacer
    loop = asyncio.get_running_loop()
    limited = {f"S{i}": {100 + i, 0} for i in range(50)}
    gc.collect()
    gc.disable()
    try:
        done = {sid: loop.create_future() for sid in list(limited)[:25]}
        pacer = Pacer()
        gates = DecreaseGates(done, limited, pacer)
        waiting = [asyncio.ensure_future(gates.wait(sid)) for sid in limited]
        await asyncio.sleep(0)
        for future in list(done.values())[:10]:   # some decreases answered, most pending
            future.set_result((True, T0))
        await asyncio.sleep(0)
        gates.cancel()   # as the round's end does
        pacer.close()
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        freed = weakref.ref(gates)
        del gates, done, waiting, pacer, future, task
        await asyncio.sleep(0)
        assert freed() is None
    finally:
        gc.enable()


async def test_a_pacer_closed_mid_run_is_freed_without_the_cycle_collector(monkeypatch):
    """A pacer closed while jobs wait (a round ends mid-batch): its task keeps the
    CancelledError, whose traceback holds the pacer's frame - and with it the pacer and the
    job it ran last (a round's gates). The pacer lets go of its task, so all of it is freed
    by reference counting, not left to the cycle collector (frozen survivors, s23-gc)."""
    import gc
    import weakref

    from smartcharge.site import pacing
    from smartcharge.site.pacing import Pacer

    class Held:   # what the last job held
        pass

    monkeypatch.setattr(pacing, "PACE_BATCH", 2)
    gc.collect()
    gc.disable()
    try:
        pacer, held = Pacer(), Held()
        for _ in range(10):
            pacer.call(lambda kept=held: None)
        await asyncio.sleep(0)
        await asyncio.sleep(0)   # a batch ran; more jobs wait
        pacer.close()
        await asyncio.sleep(0)
        await asyncio.sleep(0)   # its task took the cancellation
        freed_pacer, freed_held = weakref.ref(pacer), weakref.ref(held)
        del pacer, held
        assert freed_pacer() is None and freed_held() is None
    finally:
        gc.enable()


async def test_a_waiter_asked_for_after_the_gates_were_cancelled_gives_up():
    """Cancelled gates drop their maps (above); a waiter asked for afterwards must still give
    up (None: its increases do not go), not find nothing to wait for and let them go."""
    loop = asyncio.get_running_loop()
    gates = DecreaseGates({"A1": loop.create_future()}, LIMITED)
    gates.cancel()
    assert await asyncio.wait_for(gates.wait("A2"), 5) is None
