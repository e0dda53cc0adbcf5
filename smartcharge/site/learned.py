"""The site bus's events: the controller's plans going out, and what dispatch learns coming
back - so neither holds the other (the controller subscribes to what dispatch learned, dispatch
to the plans). Published on an `events.EventBus` owned by the controller (`site_bus`)."""

from __future__ import annotations

from dataclasses import dataclass

from smartcharge.site.plan import Plan
from smartcharge.site.topology import ConnectorRef


@dataclass(frozen=True)
class PlanMade:
    """The controller made a checked plan: dispatch sends it."""

    plan: Plan


@dataclass(frozen=True)
class ConnectorControl:
    """Whether a connector takes schedules: `uncontrollable` says why not (None: it does), so
    it is planned as a fixed load at what it may draw."""

    ref: ConnectorRef
    uncontrollable: str | None


@dataclass(frozen=True)
class ConnectorUnbounded:
    """Whether nothing of ours bounds a connector while it is idle (its station refused its
    fail-safe default): its maximum is kept free above its station (`unbounded.py`). Its
    sessions are planned as any other's: a station may refuse defaults and take TxProfiles."""

    ref: ConnectorRef
    unbounded: bool


@dataclass(frozen=True)
class IdleDefaultKept:
    """A station with one stack level (no idle schedule fits above its fail-safe default:
    `Capabilities.idle_layer` false): an idle connector of it keeps its default, up to
    `default_w`, which a car arriving there draws before anybody tells us; the plan keeps that
    free above the station (`unbounded.py`). None: not so (any more)."""

    ref: ConnectorRef
    default_w: float | None


@dataclass(frozen=True)
class HeldIdle:
    """A station held at what it may hold (offline, or a lowered default or idle share left
    unanswered: failsafe.hold_offline): per idle connector, what a car arriving there may
    draw from now on under what it holds - its idle share until that ends, then its fail-safe
    default (W steps). The plan keeps it free above the station (`unbounded.py`): sized as if
    it held its new share, the others' idle shares left 37 kW installed under a 30 kW cap
    beside CP2 offline on its 22 kW idle share (tests/test_outside_s35_cap_answer.py). Empty:
    let go (set up again)."""

    station_id: str
    held: tuple   # ((ConnectorRef, W steps), ...)
    holds_added: int = 0   # dispatch's count of holds then: a plan made after it knows it


@dataclass(frozen=True)
class ConnectorFloor:
    """The station refuses limit 0: pausing the connector leaves it at `floor_w`."""

    ref: ConnectorRef
    floor_w: float


@dataclass(frozen=True)
class PlansAsDefault:
    """A connector's plan went out as its default (its TxProfile refused) or, `as_default`
    False, as its transaction's schedule again. A default limits whatever car is plugged in,
    the next one too: the connector is planned on unknown phases while it holds."""

    ref: ConnectorRef
    as_default: bool


@dataclass(frozen=True)
class ReplanWanted:
    """A plan could not go out as made (a decrease unacknowledged): plan again."""

    reason: str


@dataclass(frozen=True)
class ProfileSent:
    """One request went to a station (counted in the controller's stats)."""
