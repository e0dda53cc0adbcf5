"""The demo's billing check: every session a simulated station closed, read back from the
server's session API like any client would, must be billed as the station's register
difference (meter at the stop minus meter at the start), whatever OCPP version reported it.

A 1.6 session is found by the transaction id the central system gave; a 2.0.1 session by the
station's own transaction id (a string in `station_transaction_id`)."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

if TYPE_CHECKING:
    from smartcharge.demo.run import Demo

log = logging.getLogger("smartcharge.demo")


@dataclass
class BillingCheck:
    """Closed sessions per OCPP version: how many, and which were not billed exactly."""

    closed: Counter = field(default_factory=Counter)
    exact: Counter = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.wrong


def _key(row: dict) -> tuple[str, object]:
    # 1.6 sessions may carry an int there (an id the station used that was not ours)
    own = row.get("station_transaction_id")
    return row["station_id"], own if isinstance(own, str) else row["transaction_id"]


async def check_billing(demo: Demo) -> BillingCheck | None:
    """None when the sessions could not be read."""
    tokens = sorted(demo.site.operator_tokens)
    headers = {"Authorization": f"Bearer {tokens[0]}"} if tokens else {}
    try:
        async with demo.http.get(f"{demo.base_url}/api/sessions?limit=100000",
                                 headers=headers) as resp:
            if resp.status != 200:
                log.warning("GET /api/sessions: HTTP %d", resp.status)
                return None
            rows = {_key(row): row for row in await resp.json()}
    except aiohttp.ClientError as error:
        log.warning("could not read /api/sessions: %s", error)
        return None
    check = BillingCheck()
    for station_id, tx in demo.counters.closed:
        version = demo.protocols[station_id].ocpp_version
        check.closed[version] += 1
        row = rows.get((station_id, tx.transaction_id))
        expected_wh = tx.meter_stop_wh - tx.meter_start_wh
        if row is not None and row.get("energy_wh") == expected_wh:
            check.exact[version] += 1
        else:
            billed = None if row is None else row.get("energy_wh")
            check.wrong.append(f"{station_id} {tx.transaction_id}: billed {billed} Wh, "
                               f"registers say {expected_wh} Wh")
    return check
