"""Retention of raw inbound messages: the `inbound_messages` table keeps every billing message
as received (audit, and recognising a re-sent message as a duplicate); rows older than
`server.inbound_retention_days` are pruned at start and then every `PRUNE_EVERY_S`, with the
information-only reports of 2.0.1 stations (`store_reports.PRUNABLE_KINDS`: device models,
event streams) and the DataTransfers of either version (`data_transfers`: vendors' data); the
audit of charging profiles sent (`profiles_sent`) and the stations' firmware / diagnostics / log
statuses and security events (`station_notifications`) after `server.audit_retention_days`.

Only old rows go. A station re-sends an unacknowledged message within seconds to hours (its
offline queue), far inside any retention period; the sessions, samples and billed energy the
messages produced stay in their own tables for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web

from smartcharge.appkeys import CLOCK, STORE
from smartcharge.store_reports import prune_reports

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0


async def prune_inbound(app: web.Application, retention_days: float,
                        audit_retention_days: float) -> int:
    now = app[CLOCK].now()
    before = now - timedelta(days=retention_days)
    audit_before = now - timedelta(days=audit_retention_days)
    pruned, audited = await app[STORE].run(lambda tx: (
        tx.prune_inbound_messages(before) + prune_reports(tx, before)
        + tx.prune_data_transfers(before), tx.prune_profiles_sent(audit_before)
        + tx.prune_station_notifications(audit_before)))
    if pruned:
        log.info("retention: pruned %d inbound message(s), report(s) and DataTransfer(s) "
                 "received before %s", pruned, before.isoformat())
    if audited:
        log.info("retention: pruned %d audit row(s) of profiles sent and station "
                 "notifications before %s", audited,
                 audit_before.isoformat())
    return pruned + audited


def setup_retention(app: web.Application, retention_days: float,
                    audit_retention_days: float, every_s: float = PRUNE_EVERY_S) -> None:
    """Prune at start and then every `every_s` (wall time), for as long as the app runs."""

    async def loop() -> None:
        while True:
            try:
                await prune_inbound(app, retention_days, audit_retention_days)
            except Exception:   # a task boundary: a failed prune is retried next round
                log.exception("retention: pruning inbound messages failed")
            await asyncio.sleep(every_s)

    async def retention_ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(loop(), name="retention")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.cleanup_ctx.append(retention_ctx)
