"""Who may do what on the REST API: bearer tokens per role, checked for every route, fail closed.

Roles (docs/api.md, "Roles"):
- `reader`   reads stations, sessions (id tags masked), the billing CSV, meter values, the site
             snapshot and its stream, caps and demand-response events;
- `operator` reads everything a reader does (id tags in full) and controls: station commands,
             the site cap and cap schedule, session needs, demand-response events;
- `utility`  demand-response events only (list, read, post, update, cancel);
- `admin`    everything.

Every /api route is registered with `route(...)` and the roles that may call it; the
`authorize` middleware checks the token before any handler runs. A route registered without
roles is refused to everyone (403) and a request under /api that matches no route needs a valid
token before it learns so (401). Only `GET /api/openapi.json` (it describes the API) and
`GET /api/health` (the store's state, for a load balancer) are public: they hold no data. With no token configured nothing is open: the API answers 401 to everyone,
unless the server was started with `--insecure-open-api` (every request then acts as admin).

Tokens come from the site file (`[api] <role>_tokens`) and the environment
(`SMARTCHARGE_<ROLE>_TOKENS`, comma-separated). Each may be a salted scrypt hash
(`smartcharge hash-secret`) or plaintext (accepted, with a warning at start).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from smartcharge.api.errors import ApiError
from smartcharge.api.open_origin import check_open_api_caller
from smartcharge.auth_throttle import AuthThrottle, ThrottleSettings
from smartcharge.clock import Clock
from smartcharge.credentials import is_hashed, verify_secret

log = logging.getLogger("smartcharge.api")

READER, OPERATOR, UTILITY, ADMIN = "reader", "operator", "utility", "admin"
ROLES = (ADMIN, OPERATOR, UTILITY, READER)     # a token listed under two roles takes the first

# the route groups, by who may call them (admin may call everything)
PUBLIC: frozenset[str] = frozenset({"*"})
READ = frozenset({READER, OPERATOR, ADMIN})
OPERATE = frozenset({OPERATOR, ADMIN})
DR_READ = frozenset({READER, OPERATOR, UTILITY, ADMIN})
DR_WRITE = frozenset({OPERATOR, UTILITY, ADMIN})
SEES_ID_TAGS = frozenset({OPERATOR, ADMIN})

ROLE = web.RequestKey("api_role", str)
# 10 wrong tokens from one address within a minute, and all its requests get 429 for a minute
# (a token names no identity: the address is the key)
TOKEN_GUESSING = ThrottleSettings(max_failures=10, window_s=60.0, backoff_s=60.0,
                                  address_max_failures=None)
_CACHE_SIZE = 256           # verified tokens remembered, so a hashed token costs one scrypt
_VERIFY_CONCURRENCY = 2     # scrypt checks at once: guessing must not starve the event loop


@dataclass
class ApiAuth:
    """The configured tokens (role -> stored secrets) and the route policy of one app."""

    tokens: Mapping[str, tuple[str, ...]]
    throttle: AuthThrottle
    open_api: bool = False
    policy: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    _verified: OrderedDict[bytes, str] = field(default_factory=OrderedDict)
    _key: bytes = field(default_factory=lambda: os.urandom(32))
    _checks: asyncio.Semaphore | None = None

    @property
    def configured(self) -> bool:
        return any(self.tokens.values())

    async def role_of(self, token: str) -> str | None:
        """The role a presented token belongs to, or None. Plaintext tokens are compared in
        constant time, all of them; hashed ones with scrypt, off the event loop."""
        try:
            given = token.encode()
        except UnicodeEncodeError:
            # header bytes no UTF-8 reads (aiohttp keeps them as surrogate escapes): no token
            # of ours - a wrong one like any other (401, a failed guess), never a 500
            return None
        fingerprint = hmac.new(self._key, given, hashlib.sha256).digest()
        cached = self._verified.get(fingerprint)
        if cached is not None:
            self._verified.move_to_end(fingerprint)
            return cached
        role = _plain_match(self.tokens, token)
        if role is None and any(is_hashed(s) for stored in self.tokens.values() for s in stored):
            if self._checks is None:
                self._checks = asyncio.Semaphore(_VERIFY_CONCURRENCY)
            async with self._checks:
                role = await asyncio.to_thread(_hashed_match, self.tokens, token)
        if role is not None:
            self._verified[fingerprint] = role
            if len(self._verified) > _CACHE_SIZE:
                self._verified.popitem(last=False)
        return role


def _plain_match(tokens: Mapping[str, tuple[str, ...]], token: str) -> str | None:
    given = token.encode()
    found = None
    for role in ROLES:
        for stored in tokens.get(role, ()):
            # every plaintext token is compared, in constant time, without stopping early
            if not is_hashed(stored) and hmac.compare_digest(given, stored.encode()) \
                    and found is None:
                found = role
    return found


def _hashed_match(tokens: Mapping[str, tuple[str, ...]], token: str) -> str | None:
    for role in ROLES:
        if any(verify_secret(stored, token) for stored in tokens.get(role, ())
               if is_hashed(stored)):
            return role
    return None


def tokens_from(site) -> dict[str, tuple[str, ...]]:
    """Every role's tokens, as the site file loader gathered them (file and environment)."""
    return {role: tuple(sorted(getattr(site, f"{role}_tokens", ()))) for role in ROLES}


AUTH = web.AppKey("api_auth", ApiAuth)


def setup_auth(app: web.Application, site, clock: Clock, *, open_api: bool = False) -> ApiAuth:
    auth = ApiAuth(tokens_from(site), AuthThrottle(clock, TOKEN_GUESSING), open_api=open_api)
    app[AUTH] = auth
    app.middlewares.append(authorize)
    plaintext = sum(not is_hashed(s) for stored in auth.tokens.values() for s in stored)
    if open_api:
        log.warning("--insecure-open-api: the REST API is OPEN, every request acts as admin "
                    "(controls stations, sees id tags); use it only on a trusted loopback")
    elif not auth.configured:
        log.warning("no API token configured ([api] <role>_tokens in the site file or "
                    "SMARTCHARGE_<ROLE>_TOKENS): the REST API and the dashboard refuse every "
                    "request (401)")
    if plaintext:
        log.warning("%d API token(s) are plaintext in the configuration; store salted hashes "
                    "instead (`smartcharge hash-secret`)", plaintext)
    return auth


def route(app: web.Application, method: str, path: str,
          handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
          roles: Iterable[str]) -> None:
    """Register an API route together with the roles that may call it."""
    added = app.router.add_route(method, path, handler)
    # keyed like the lookup below: the canonical path ("{id:.+}" -> "{id}")
    app[AUTH].policy[(method.upper(), added.resource.canonical)] = frozenset(roles)


@web.middleware
async def authorize(request: web.Request, handler) -> web.StreamResponse:
    if request.path == "/api" or request.path.startswith("/api/"):
        request[ROLE] = await require(request, *_allowed(request))
    return await handler(request)


def _allowed(request: web.Request) -> frozenset[str]:
    policy = request.app[AUTH].policy
    route_info = request.match_info.route
    resource = route_info.resource
    if resource is None:          # no such path, or not this method: any valid token learns it
        return DR_READ
    method = "GET" if request.method == "HEAD" else request.method
    return policy.get((method, resource.canonical), frozenset())


async def require(request: web.Request, *roles: str) -> str:
    """The one auth check: the caller's role if it may call a route open to `roles`;
    else 401 (no or unknown token) or 403 (a token of another role)."""
    auth = request.app[AUTH]
    allowed = frozenset(roles)
    if allowed == PUBLIC:
        return "public"
    if auth.open_api:
        check_open_api_caller(request)   # no other web site through this machine's browser
        return ADMIN
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <token>' (an API "
                       "token of a role that may call this route)", headers=_CHALLENGE)
    address = request.remote or "?"
    wait_s = auth.throttle.retry_after_s(address)
    if wait_s is not None:   # every request, right token or not: it must not confirm a guess
        raise ApiError(429, "too_many_requests", "too many unknown API tokens from this "
                       "address; try again later", headers={"Retry-After": str(
                           max(1, math.ceil(wait_s)))})
    held = await auth.role_of(token)
    if held is None:
        auth.throttle.failed(address)
        log.warning("API: unknown bearer token from %s for %s %s", address, request.method,
                    request.path)
        raise ApiError(401, "unauthorized", "unknown API token", headers=_CHALLENGE)
    if not allowed:
        log.error("API route %s %s has no access rule: refused", request.method, request.path)
        raise ApiError(403, "forbidden", "this route has no access rule; nobody may call it")
    if held == ADMIN or held in allowed:
        return held
    needed = " or ".join(r for r in ROLES if r in allowed and r != ADMIN)
    raise ApiError(403, "forbidden", f"this route needs {_article(needed)} {needed} token; "
                   f"yours is {_article(held)} {held} token")


def _article(word: str) -> str:
    # by sound, for the role names: an admin, an operator, a reader, a utility (a "you" sound)
    return "an" if word[:1] in "aeio" else "a"


_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def role(request: web.Request) -> str:
    """The role the middleware established for this request."""
    return request.get(ROLE, "public")


def mask_id_tag(id_tag: str | None, request: web.Request) -> str | None:
    """An RFC id tag is personal data and, for Authorize, a credential: only the roles that
    act on sessions see it whole; others get its first four characters (`ABCD****`)."""
    if id_tag is None or role(request) in SEES_ID_TAGS:
        return id_tag
    return id_tag[:4] + "****" if len(id_tag) > 4 else "****"
