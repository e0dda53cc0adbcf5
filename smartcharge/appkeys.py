"""Typed keys for what the aiohttp application holds, so other parts (the site controller, the
dashboard) can be added to the same app without guessing names or types."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from smartcharge.clock import Clock
from smartcharge.events import EventBus
from smartcharge.model import Site
from smartcharge.ocpp.registry import StationRegistry
from smartcharge.store import SqliteStore

SITE = web.AppKey("site", Site)
STORE = web.AppKey("store", SqliteStore)          # set when the app starts (cleanup_ctx)
REGISTRY = web.AppKey("registry", StationRegistry)
EVENTS = web.AppKey("events", EventBus)
CLOCK = web.AppKey("clock", Clock)
# a station's link, recorder, voltage_v=, unit=, settings= -> the control port for that
# connection, by its negotiated protocol (ocpp/ports.py); set by the app, so the site never
# imports a protocol package
PORTS = web.AppKey("ports", Callable)
