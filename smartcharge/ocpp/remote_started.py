"""The id tags our remote starts were accepted for, on one station's connection.

A station set to authorize remote starts (1.6 `AuthorizeRemoteTxRequests`, 2.0.1
`AuthCtrlr.AuthorizeRemoteStart`) sends Authorize for the tag of our RemoteStartTransaction /
RequestStartTransaction, and reads the idTagInfo / idTokenInfo of its start: a tag the site
does not list would be refused, and the start the operator asked for refused or ended. A tag we
remote-started on this station is therefore accepted here for `REMOTE_START_GRACE_S` after the
station accepted our request (the time a driver has to plug in), and for the events of the
transaction it started within that time. Nowhere else, and no other tag: a tag the store holds
with a status of its own (Blocked, Expired, ...) keeps it (`CentralSystemBase.id_tag_status`).
Held in memory: a restart forgets the grants (the operator can remote-start again)."""

from __future__ import annotations

from datetime import datetime, timedelta

from smartcharge.model import fold_id_tag

REMOTE_START_GRACE_S = 300.0
REMOTE_START_ACTIONS = {"RemoteStartTransaction": ("idTag",),
                        "RequestStartTransaction": ("idToken", "idToken")}
_MOST_TRANSACTIONS = 64     # bound on the transactions remembered per station


class RemoteStartedTags:
    def __init__(self) -> None:
        self._asked: dict[str, str] = {}            # our call's unique id -> folded tag
        self._until: dict[str, datetime] = {}       # folded tag -> end of its grant
        self._transactions: dict[str, str] = {}     # station's transaction id -> folded tag

    def asked(self, unique_id: str, action: str, payload: dict) -> None:
        """Our call `unique_id` is on its way; a remote start's tag waits for its answer."""
        path = REMOTE_START_ACTIONS.get(action)
        if path is None:
            return
        value: object = payload
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str):
            self._asked[unique_id] = fold_id_tag(value)

    def answered(self, unique_id: str, answer: object, now: datetime) -> None:
        """The station's answer to our call, as it arrives - before any later frame of the
        station (its Authorize) is read."""
        tag = self._asked.pop(unique_id, None)
        if tag is not None and isinstance(answer, dict) and answer.get("status") == "Accepted":
            self._until = {t: u for t, u in self._until.items() if u >= now}
            self._until[tag] = now + timedelta(seconds=REMOTE_START_GRACE_S)

    def forget(self, unique_id: str) -> None:
        """Our call ended without an answer (timeout, disconnect)."""
        self._asked.pop(unique_id, None)

    def accepts(self, id_tag: str, now: datetime, transaction: str | None = None) -> bool:
        """Whether `id_tag` is one we remote-started here, in its grace or on `transaction`
        (the station's transaction id of the event asking), which then keeps it."""
        tag = fold_id_tag(id_tag)
        if transaction is not None and self._transactions.get(transaction) == tag:
            return True
        until = self._until.get(tag)
        if until is None or now > until:
            return False
        if transaction is not None:
            self._transactions[transaction] = tag
            while len(self._transactions) > _MOST_TRANSACTIONS:
                del self._transactions[next(iter(self._transactions))]
        return True
