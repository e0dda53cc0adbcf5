"""The event loop's CPU per SetChargingProfile on a control port's path, in-process (issue 10).

    python -m benchmarks.send_cpu [--requests 2000] [--repeats 5]

What a dispatch round pays per request once it decided what to send: the 1.6 port builds the
payload from a `PowerSchedule`, records it (the audit recorder), the link's call, the adapter's
`send_call` (framing, unique id, the call lock, the wait for the answer), and the answer coming
back through the adapter's inbound path (`route_message`: the edge's checks, the answer's
schema check, the typed result). The "station" is a stub connection that answers every request
`Accepted` at once (a turn of the loop later): no WebSocket framing on either side, no other
process. Measured as the loop thread's CPU time (`time.thread_time`), which the machine's load
hardly stretches: compare trees in the same minutes all the same.

Not here: the comparison that decides what to send, the schedule's building from a plan
(`sending.py`), the WebSocket's own framing - see `control_latency` for the whole event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from datetime import UTC, datetime

from smartcharge.clock import SystemClock
from smartcharge.events import EventBus
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.ocpp.central import AdapterContext
from smartcharge.ocpp.port import PowerSchedule
from smartcharge.ocpp.registry import StationLink
from smartcharge.ocpp.v16.adapter import CentralSystemV16
from smartcharge.ocpp.v16.station_port import V16StationPort
from smartcharge.ocpp.v16 import profiles as P


class AnsweringConnection:
    """Answers every CALL `Accepted` in the next turn of the loop, through the adapter's
    inbound path, as a station's frame would arrive."""

    def __init__(self) -> None:
        self.adapter = None
        self._incoming: asyncio.Queue = asyncio.Queue()

    async def send(self, text: str) -> None:
        unique_id = json.loads(text)[1]
        answer = '[3,"%s",{"status":"Accepted"}]' % unique_id
        asyncio.get_running_loop().call_soon(self._incoming.put_nowait, answer)

    async def recv(self) -> str:
        return await self._incoming.get()


async def measure(requests: int) -> float:
    site = Site(name="send-cpu", circuits=(Circuit("grid", None, limit_w=1e6),),
                stations=(Station("CP1", "grid", (Connector(1), Connector(2))),))
    connection = AnsweringConnection()
    context = AdapterContext(site=site, store=None, events=EventBus(), clock=SystemClock())
    adapter = CentralSystemV16("CP1", connection, context, boot_accepted=True,
                               response_timeout_s=30.0)
    adapter._registered.set()
    serving = asyncio.ensure_future(adapter.start())

    async def close_socket(reason: str) -> None:
        pass
    link = StationLink("CP1", "ocpp1.6", adapter, 30.0, close_socket)
    rows: list = []
    port = V16StationPort(link, SystemClock(), lambda *row: rows.append(row), voltage_v=230.0)
    port.caps16 = P.Capabilities()
    now = datetime.now(UTC)
    schedule = PowerSchedule(start=now, offsets_s=[0.0, 900.0, 1800.0],
                             power_w=[11_000.0, 7_000.0, 4_000.0],
                             current_a=[15.9, 10.1, 5.8], phases=3, duration_s=1800)
    for _ in range(50):   # warm: the schema compiled, the memos filled
        await port.install_failsafe(1, schedule)
    started = time.thread_time()
    for index in range(requests):
        answer = await port.set_connector_schedule(1 + index % 2, 100 + index % 2, schedule)
        assert answer.answer.value == "Accepted", answer
    spent = time.thread_time() - started
    serving.cancel()
    return spent / requests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    per = [asyncio.run(measure(args.requests)) for _ in range(args.repeats)]
    print(f"loop CPU per SetChargingProfile: median {statistics.median(per) * 1e6:.0f} us "
          f"(min {min(per) * 1e6:.0f}, max {max(per) * 1e6:.0f}; {args.repeats} x "
          f"{args.requests}); load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
