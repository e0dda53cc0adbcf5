"""The command port: the remote commands the REST API offers, whatever OCPP version a station
speaks. The API reads a body into `Fields`, asks the station's protocol (`ocpp/ports.py`,
`commands_for`) to build the request, checks it, sends it over the link and shows the answer; it
never names a protocol package. A protocol package implements `StationCommands`
(`ocpp/v16/commands.py` for 1.6).

A wrong request raises `CommandInvalid` (the API's 422) with a message for the client, before
anything is sent.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

_MISSING = object()


class CommandInvalid(ValueError):
    """The request is wrong (a field, a query parameter, or against the protocol's schema)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


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
               choices: type | None = None):
        value = self._data.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise CommandInvalid(f"{name} is required")
            return None
        if not isinstance(value, str) or not value:
            raise CommandInvalid(f"{name} must be a non-empty string, got {value!r}")
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

    @abstractmethod
    def answer(self, result: Any) -> dict[str, Any]:
        """The station's answer as JSON, in the protocol's own field names."""


__all__ = ["CommandInvalid", "Fields", "StationCommands", "query_int"]
