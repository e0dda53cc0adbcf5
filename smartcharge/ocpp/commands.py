"""The command port: the remote commands the REST API offers, whatever OCPP version a station
speaks. The API reads a body into `Fields`, asks the station's protocol (`ocpp/ports.py`,
`commands_for`) to build the request, checks it, sends it over the link and shows the answer; it
never names a protocol package. A protocol package implements `StationCommands`
(`ocpp/v16/commands.py` for 1.6).

A wrong request raises `CommandInvalid` (the API's 422) with a message for the client, before
anything is sent. `BuiltCommands` is what both versions share: a table of builders, the schema
check in the version's name, the answer as JSON; a version gives its table and what it says
differently.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case

from smartcharge.ocpp.edge import schema_problem

_MISSING = object()


class CommandInvalid(ValueError):
    """The request is wrong (a field, a query parameter, or against the protocol's schema)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class CommandRefused(ValueError):
    """A valid request the site will not send (the API's 409): it would take the station out
    of the site's control, so the site could no longer keep its limits."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


# the command that removes profiles the site installed (fail-safe defaults, plans)
CLEARS_PROFILES = "clear-charging-profile"


class Fields:
    """A JSON object from the client, read field by field with clear messages."""

    def __init__(self, data: dict[str, Any], allowed: set[str]) -> None:
        unknown = set(data) - allowed
        if unknown:
            raise CommandInvalid(f"unknown field(s) {', '.join(sorted(unknown))}; allowed: "
                                 f"{', '.join(sorted(allowed)) or 'none'}")
        self._data = data

    def raw(self, name: str) -> Any:
        """The value as sent (None: absent), for a field a protocol reads its own way."""
        return self._data.get(name)

    def integer(self, name: str, *, required: bool = False, minimum: int | None = None):
        value = self._data.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise CommandInvalid(f"{name} is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise CommandInvalid(f"{name} must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise CommandInvalid(f"{name} must be >= {minimum}, got {value}")
        return value

    def string(self, name: str, *, required: bool = False, max_chars: int | None = None,
               choices: type | None = None, may_be_empty: bool = False):
        """`may_be_empty`: "" is a value (a configuration value: OCPP sets no minimum length,
        and "" is how a station is told, say, to send no samples in its stops)."""
        value = self._data.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise CommandInvalid(f"{name} is required")
            return None
        if not isinstance(value, str) or not (value or may_be_empty):
            raise CommandInvalid(f"{name} must be a {'' if may_be_empty else 'non-empty '}"
                                 f"string, got {value!r}")
        if max_chars is not None and len(value) > max_chars:
            raise CommandInvalid(f"{name} is at most {max_chars} characters")
        if choices is not None:
            allowed = [member.value for member in choices]
            if value not in allowed:
                raise CommandInvalid(f"{name} must be one of {', '.join(allowed)}, "
                                     f"got {value!r}")
            return choices(value)
        return value


def query_int(query: Mapping[str, str], name: str, *, required: bool, minimum: int = 0):
    """An integer query parameter (`?connector_id=1`)."""
    text = query.get(name)
    if text is None:
        if required:
            raise CommandInvalid(f"query parameter {name} is required")
        return None
    try:
        value = int(text)
    except ValueError:
        raise CommandInvalid(f"query parameter {name} must be an integer, got {text!r}"
                             ) from None
    if value < minimum:
        raise CommandInvalid(f"query parameter {name} must be >= {minimum}")
    return value


def composite_query(query: Mapping[str, str]) -> tuple[int, int, str | None]:
    """What a composite schedule is asked for (`?connector_id=&duration_s=&charging_rate_unit=`):
    the connector (1.6) or EVSE (2.0.1), the duration in s, and the unit ("A", "W", None)."""
    unit = query.get("charging_rate_unit")
    if unit is not None and unit not in ("A", "W"):
        raise CommandInvalid('charging_rate_unit must be "A" or "W"')
    return (query_int(query, "connector_id", required=True),
            query_int(query, "duration_s", required=True, minimum=1), unit)


def plain(value: Any) -> Any:
    """JSON-ready: the library parses schedule limits as Decimal (for `multipleOf 0.1`)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def camel(payload: Any) -> dict[str, Any]:
    """A library request or answer as the JSON object on the wire (camelCase, no nulls)."""
    return plain(snake_to_camel_case(remove_nones(serialize_as_dict(payload))))


class StationCommands(ABC):
    """One protocol's remote commands. `catalogue`: command name (the REST route's last part)
    -> (HTTP method, the body fields it takes)."""

    protocol: str
    catalogue: dict[str, tuple[str, set[str]]]

    @abstractmethod
    def build(self, name: str, fields: Fields, query: Mapping[str, str]) -> Any:
        """The request for command `name`, from the body's fields and the query string."""

    @abstractmethod
    async def check(self, request: Any) -> None:
        """Validate the request against the protocol's schema (raises CommandInvalid)."""

    async def resolve(self, request: Any, link: Any) -> Any:
        """The request as it goes to this station over `link` (its live connection): a
        protocol fills in what only the connection knows (2.0.1: the station's own
        transactionId for our session id). Raises CommandInvalid when it cannot."""
        return request

    @abstractmethod
    def action(self, request: Any) -> str:
        """The protocol's name of the request (e.g. "RemoteStartTransaction")."""

    def sets_up_again(self, name: str, request: Any) -> bool:
        """True when, once sent, what the site installed on the station may be gone or not
        in force (an operator's ClearChargingProfile; 2.0.1: smart charging turned on again):
        the site must set the station up again, as after a reboot."""
        return name == CLEARS_PROFILES

    @abstractmethod
    def answer(self, result: Any) -> dict[str, Any]:
        """The station's answer as JSON, in the protocol's own field names."""


# command name -> (HTTP method, builder(fields, query), body fields allowed)
Builders = dict[str, tuple[str, Callable[[Fields, Mapping[str, str]], Any], set[str]]]


class BuiltCommands(StationCommands):
    """A protocol's commands from its table of `builders`, checked against the schema of the
    `ocpp` library's `version` ("1.6", "2.0.1")."""

    version: str
    builders: Builders

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "builders" in cls.__dict__:
            cls.catalogue = {name: (method, allowed)
                             for name, (method, _, allowed) in cls.builders.items()}

    def build(self, name: str, fields: Fields, query: Mapping[str, str]) -> Any:
        return self.builders[name][1](fields, query)

    async def check(self, request: Any) -> None:
        action = type(request).__name__
        problem = await schema_problem(action, camel(request), self.version)
        if problem is not None:
            raise CommandInvalid(f"not a valid OCPP {self.version} {action}: {problem}")

    def action(self, request: Any) -> str:
        return type(request).__name__

    def answer(self, result: Any) -> dict[str, Any]:
        return camel(result)


__all__ = ["Builders", "BuiltCommands", "CLEARS_PROFILES", "CommandInvalid", "CommandRefused",
           "Fields", "StationCommands", "camel",
           "composite_query", "plain", "query_int"]
