"""Property: whatever a station's messages go through on their way to us — retried verbatim or
re-worded, stops held back past the next start, samples delivered after their stop, reboots,
meter resets, a start register of 0 after an offline start, a stop under an unknown id, a stop
re-sent by buggy firmware under id 0 with its register a few Wh off — the
billable rows of `/api/sessions.csv` add up to exactly the energy the station delivered.

Each example runs the real app on 127.0.0.1 with a fresh SQLite file and talks to it with the
`ocpp` library's client over a real WebSocket.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.v16 import call

from billing_export import draw_next, play_and_bill
from conftest import TestStation, make_site

STEP = timedelta(minutes=10)
MAX_STEP_WH = 3_000          # 18 kW for 10 min: a 22 kW station can deliver it
OFFLINE_START_MIN_WH = 200_000   # above what any session here could plausibly deliver


@dataclass
class Plan:
    """One session as the station lives it; energy comes from `steps_wh` (one per 10 min)."""

    connector: int
    steps_wh: list[int]
    offline_start: bool          # StartTransaction with meterStart 0 + a Transaction.Begin sample
    reset_after: int | None      # the meter resets to 0 right after this sample
    reboot_after: int | None     # a BootNotification right after this sample
    unknown_stop_id: bool        # the stop comes with transactionId -1
    resent_under_id_0: bool      # after the stop, a buggy copy under id 0, register a bit off
    stop_after_next_start: bool  # the stop is held back until the next session has started
    late_samples: frozenset[int]  # samples delivered only after the stop


plans = st.builds(
    Plan, connector=st.sampled_from([1, 2]),
    steps_wh=st.lists(st.integers(0, MAX_STEP_WH), min_size=2, max_size=6),
    offline_start=st.booleans(), reset_after=st.none() | st.integers(1, 5),
    reboot_after=st.none() | st.integers(1, 5), unknown_stop_id=st.booleans(),
    resent_under_id_0=st.booleans(),
    stop_after_next_start=st.booleans(),
    late_samples=st.frozensets(st.integers(1, 5), max_size=2))


@dataclass
class Message:
    kind: str                    # Start | Meter | Stop | Boot
    session: int                 # index into the plans (-1 for Boot)
    build: object                # (ids, reworded) -> the ocpp call


@dataclass
class Script:
    """What the station sends, in the order it sends it, and the energy it really delivered."""

    queues: dict[int, list[Message]] = field(default_factory=lambda: {1: [], 2: []})
    delivered_wh: int = 0


def _time(moment: datetime, reworded: bool) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+00:00" if reworded else "%Y-%m-%dT%H:%M:%SZ")


def _value(register_wh: int, context: str, at: datetime, reworded: bool) -> dict:
    value = {"value": f"{register_wh / 1000:.3f}" if reworded else str(register_wh),
             "unit": "kWh" if reworded else "Wh",
             "measurand": "Energy.Active.Import.Register", "context": context}
    return {"timestamp": _time(at, reworded), "sampledValue": [value]}


def write_script(session_plans: list[Plan], t0: datetime) -> Script:
    script = Script()
    register = {1: 4_500_000, 2: 1_200_000}    # each connector's own meter [Wh]
    clock = {1: t0, 2: t0}
    reset_done = {1: False, 2: False}
    held_stop: dict[int, list[Message]] = {}
    for index, plan in enumerate(session_plans):
        c, tag = plan.connector, f"TAG-{index}"
        queue = script.queues[c]
        start_at, start_wh = clock[c], register[c]
        offline = plan.offline_start and start_wh > OFFLINE_START_MIN_WH
        # a meter resets only once in its life: its registers stay far below the first start
        reset_after = plan.reset_after if not reset_done[c] else None
        reset_done[c] |= reset_after is not None and reset_after < len(plan.steps_wh)

        def start(ids, reworded, c=c, tag=tag, at=start_at, wh=0 if offline else start_wh):
            return call.StartTransaction(connector_id=c, id_tag=tag, meter_start=wh,
                                         timestamp=_time(at, reworded))
        queue.append(Message("Start", index, start))
        queue.extend(held_stop.pop(c, []))    # the stop we held back, after the next start
        samples, late = [], []

        def meter(ids, reworded, index=index, c=c, values=None):
            return call.MeterValues(connector_id=c, transaction_id=ids[index],
                                    meter_value=[_value(wh, ctx, at, reworded)
                                                 for wh, ctx, at in values][::-1 if reworded
                                                                             else 1])
        if offline:
            queue.append(Message("Meter", index, lambda ids, r, m=meter, v=[
                (start_wh, "Transaction.Begin", start_at)]: m(ids, r, values=v)))
        for step, step_wh in enumerate(plan.steps_wh, start=1):
            register[c] += step_wh
            script.delivered_wh += step_wh
            clock[c] += STEP
            if step == len(plan.steps_wh):
                break
            samples.append((register[c], "Sample.Periodic", clock[c]))
            message = Message("Meter", index, lambda ids, r, m=meter, v=[samples[-1]]:
                              m(ids, r, values=v))
            (late if step in plan.late_samples else queue).append(message)
            if step == reset_after:
                register[c] = 0
            if step == plan.reboot_after:
                queue.append(Message("Boot", -1, lambda ids, r: call.BootNotification(
                    charge_point_vendor="Test", charge_point_model="T1")))
        stop_at, stop_wh = clock[c], register[c]
        clock[c] += STEP

        def stop(ids, reworded, index=index, tag=tag, at=stop_at, wh=stop_wh,
                 data=tuple(samples), unknown=plan.unknown_stop_id):
            # a retry may carry its transactionData in another order, in kWh, with more samples
            chosen = list(data[-2:] if reworded else data[-1:])
            return call.StopTransaction(
                meter_stop=wh, timestamp=_time(at, reworded),
                transaction_id=-1 if unknown else ids[index], reason="Local", id_tag=tag,
                transaction_data=[_value(v, ctx, t, reworded) for v, ctx, t in chosen] or None)
        stops = [Message("Stop", index, stop)]
        if plan.resent_under_id_0:
            # firmware that re-sends its stop under id 0, a few Wh and seconds off, with
            # re-stamped transactionData: an orphan whose energy is already billed

            def copy(ids, reworded, tag=tag, at=stop_at, wh=stop_wh, data=tuple(samples)):
                return call.StopTransaction(
                    meter_stop=wh + 7, timestamp=_time(at + timedelta(seconds=2), reworded),
                    transaction_id=0, reason="Local", id_tag=tag, transaction_data=[
                        _value(v, ctx, t + timedelta(seconds=1), reworded)
                        for v, ctx, t in data[-1:]] or None)
            stops.append(Message("Stop", index, copy))
        # -1 stops are matched by what is open or was closed at a reboot: not held back
        if plan.stop_after_next_start and not plan.unknown_stop_id:
            held_stop[c] = stops
        else:
            queue.extend(stops)
        queue.extend(late)
    for c, stops in held_stop.items():
        script.queues[c].extend(stops)
    return script


async def deliver(script: Script, data, db_path: str, tags: frozenset[str]):
    """Play the script against a fresh server; return the billable energy in its CSV."""
    return await play_and_bill(make_site(id_tags=tags), db_path, "ocpp1.6", TestStation,
                               lambda station: _play(script, data, station))


async def _play(script: Script, data, station: TestStation) -> None:
    ids: dict[int, int] = {}
    queues = {c: list(q) for c, q in script.queues.items() if q}
    retries: list[Message] = []
    while queues or retries:
        # which connector's queue goes next, or a retry of something already sent
        message, reworded = draw_next(data, queues, retries)
        answer = await station.call(message.build(ids, reworded), suppress=False)
        if message.kind == "Start":
            ids.setdefault(message.session, answer.transaction_id)
            assert answer.transaction_id == ids[message.session]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(session_plans=st.lists(plans, min_size=1, max_size=4), data=st.data(),
       clock_offset_h=st.sampled_from([-6, -1, 0]))
def test_billable_energy_is_exactly_the_energy_delivered(session_plans, data, clock_offset_h):
    # station times hours in the past (a replayed queue), or around now, so that samples after a
    # BootNotification can show the session still running (it is reopened)
    t0 = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=clock_offset_h)
    script = write_script(session_plans, t0)
    tags = frozenset(f"TAG-{i}" for i in range(len(session_plans)))
    with tempfile.TemporaryDirectory() as directory:
        billed_wh, rows = asyncio.run(deliver(script, data, str(Path(directory) / "b.db"), tags))
    assert billed_wh == script.delivered_wh, [
        (r["state"], r["energy_wh"], r["billable"], r["flags"]) for r in rows]
