"""A VEN's state as the dashboard shows it (`vens` in the site snapshot) and as the store keeps
it across a restart: registered or not, reachable or not, the last successful poll, what it
answered to each event and the reports it sent."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from smartcharge.clock import format_ocpp_time
from smartcharge.store_tx import db_time, from_db_time

log = logging.getLogger(__name__)

STARTING, ONLINE, UNREACHABLE, STOPPED = "starting", "online", "unreachable", "stopped"


@dataclass
class VenStatus:
    program: str
    version: str
    vtn_url: str
    state: str = STARTING
    ven_id: str | None = None
    registration_id: str | None = None
    last_poll_ok: datetime | None = None   # site time of the VTN's last answer
    last_error: str | None = None
    failures: int = 0                      # requests that failed since the last success
    opts: dict[str, str] = field(default_factory=dict)   # event id -> optIn/optOut
    reports_sent: int = 0
    subscribed: bool = False               # 3: the VTN takes our subscription (webhooks)

    def contact(self, ok: bool, at: datetime, error: str | None = None) -> bool:
        """Record a request's outcome; True when the state changed."""
        before = self.state
        if ok:
            self.state, self.last_poll_ok, self.failures, self.last_error = ONLINE, at, 0, None
        else:
            self.failures += 1
            self.last_error = error or "no answer"
            self.state = UNREACHABLE
        if before != self.state:
            log.warning("openadr %s: VTN %s is %s", self.program, self.vtn_url, self.state) \
                if self.state == UNREACHABLE else log.info("openadr %s: VTN %s is %s",
                                                           self.program, self.vtn_url, self.state)
        return before != self.state

    def as_json(self, now: datetime) -> dict:
        return {"program": self.program, "version": self.version, "vtn_url": self.vtn_url,
                "state": self.state, "ven_id": self.ven_id,
                "registration_id": self.registration_id,
                "last_poll_ok": format_ocpp_time(self.last_poll_ok) if self.last_poll_ok
                else None,
                "last_error": self.last_error, "failures": self.failures,
                "opts": dict(self.opts), "reports_sent": self.reports_sent,
                "subscribed": self.subscribed}


# --- the store ------------------------------------------------------------------------------
def save(tx, status: VenStatus, at: datetime) -> None:
    tx.execute("INSERT INTO openadr_vens (program, version, vtn_url, ven_id, registration_id, "
               "state, last_poll_ok, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (program) DO UPDATE SET version = excluded.version, "
               "vtn_url = excluded.vtn_url, ven_id = excluded.ven_id, "
               "registration_id = excluded.registration_id, state = excluded.state, "
               "last_poll_ok = excluded.last_poll_ok, updated_at = excluded.updated_at",
               (status.program, status.version, status.vtn_url, status.ven_id,
                status.registration_id, status.state, db_time(status.last_poll_ok),
                db_time(at)))


def load(tx, status: VenStatus) -> None:
    """What the store remembers of this program's VEN (ids, last poll) into `status`."""
    row = tx.execute("SELECT version, vtn_url, ven_id, registration_id, last_poll_ok "
                     "FROM openadr_vens WHERE program = ?", (status.program,)).fetchone()
    if row is not None and (row[0], row[1]) == (status.version, status.vtn_url):
        status.ven_id = status.ven_id or row[2]
        status.registration_id = row[3]
        status.last_poll_ok = from_db_time(row[4])
