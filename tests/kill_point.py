"""Run `smartcharge` as a user does and SIGKILL it at one named moment, with no warning.

    python tests/kill_point.py POINT[+POINT...] serve --config site.toml

With several points the process dies when the last of them is reached; each one reached before
holds its answer back until then (so all of them are committed and none is answered). A POINT
is one of
- `answer:ACTION` (`answer:TransactionEvent/Ended`): the first CALL of ACTION (of that
  eventType) from a station is handled - its data committed - and the process dies just before
  the CALLRESULT goes out: the station never learns it was stored;
- `response:HANDLER` (`response:post_event`, `response:put_cap`): the REST handler of that name
  in `smartcharge.api.site_limits` did its work (the obligation committed) and the process dies
  before the 2xx is written;
- `migration:N` (alone): the schema migration to step N starts (the steps before it ran,
  uncommitted) and the process dies.

Only the moment is chosen here; everything else is the real server. Used by
tests/test_kill_points.py.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import signal
import sys


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Points:
    """The named points still to reach; the last one reached kills the process."""

    def __init__(self, names: list[str]) -> None:
        self.left = set(names)

    async def reached(self, name: str) -> None:
        self.left.discard(name)
        if not self.left:
            die()
        await asyncio.Event().wait()      # held: no answer leaves before the kill


POINTS = Points([])     # set in main()


def before_answer(target: str) -> None:
    from smartcharge.ocpp import server

    calls: dict[str, str] = {}
    recv, send = server.AiohttpConnection.recv, server.AiohttpConnection.send

    async def recording_recv(self) -> str:
        text = await recv(self)
        try:
            frame = json.loads(text)
        except ValueError:
            return text
        if isinstance(frame, list) and len(frame) == 4 and frame[0] == 2:
            kind = frame[3].get("eventType") if isinstance(frame[3], dict) else None
            calls[frame[1]] = f"{frame[2]}/{kind}" if kind else frame[2]
        return text

    async def dying_send(self, text: str) -> None:
        frame = json.loads(text)
        if frame[0] == 3 and calls.get(frame[1]) == target:
            await POINTS.reached(f"answer:{target}")
        await send(self, text)

    server.AiohttpConnection.recv = recording_recv
    server.AiohttpConnection.send = dying_send


_HANDLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("handler", default=None)


def before_response(handler_name: str) -> None:
    """The handler's obligation is committed; a limit's handler then waits for the stations
    to be told (`site_common.applied`): the point is reached before that wait, so the
    moment is the same whether or not the stations answer."""
    from smartcharge.api import site_limits

    handler = getattr(site_limits, handler_name)
    applied = site_limits._applied

    async def dying(request):
        _HANDLER.set(handler_name)
        await handler(request)
        await POINTS.reached(f"response:{handler_name}")

    async def dying_before_the_wait(request):
        name = _HANDLER.get()
        if name is not None:
            await POINTS.reached(f"response:{name}")
        return await applied(request)
    setattr(site_limits, handler_name, dying)
    if not getattr(applied, "kill_point", False):
        dying_before_the_wait.kill_point = True
        site_limits._applied = dying_before_the_wait


def during_migration(step: int) -> None:
    class Die(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if record.msg.startswith("store %s: migrating") and record.args[1] == step:
                die()
            return True
    logger = logging.getLogger("smartcharge.store")
    logger.setLevel(logging.INFO)
    logger.addFilter(Die())


def main() -> int:
    global POINTS
    points, argv = sys.argv[1].split("+"), sys.argv[2:]
    POINTS = Points(points)
    for point in points:
        kind, _, name = point.partition(":")
        {"answer": before_answer, "response": before_response,
         "migration": lambda n: during_migration(int(n))}[kind](name)
    from smartcharge.cli import main as smartcharge
    return smartcharge(argv)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    raise SystemExit(main())
