"""Read the site file (TOML, see docs/site-file.md) into `smartcharge.model`.

Every field is checked here, once, so the rest of the service can trust the model. A `ConfigError`
names the field path (`stations[2].connectors[0].phase`), the line where it can be found and
what is wrong. Unknown keys are errors too: a typo must not silently become a default.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from smartcharge import config_openadr
from smartcharge.clock import parse_ocpp_time
from smartcharge.credentials import SecretFormatError, check_format, is_hashed
from smartcharge.model import (
    EDGE_MARGIN_MAX_S,
    GRID_CIRCUIT_ID,
    PHASE_NAMES,
    CapWindow,
    Circuit,
    Connector,
    RateUnit,
    ServerSettings,
    SessionDefaults,
    Site,
    Station,
)

PASSWORD_MIN_BYTES = 16  # OCPP 1.6 security whitepaper: AuthorizationKey is 16..20 bytes
PASSWORD_MAX_BYTES = 20
ID_TAG_MAX_CHARS = 20  # OCPP 1.6 IdToken is CiString20
STATION_ID_MAX_CHARS = 48
_STATION_ID = re.compile(r"^[A-Za-z0-9._\-*#@+|=]+$")  # no ':' (Basic auth user) and no '/'

API_ROLES = ("reader", "operator", "utility", "admin")   # see api/auth.py
_TOP_LEVEL = {"site", "server", "grid", "circuits", "stations", "auth", "session_defaults",
              "api", "cap_schedule", "openadr"}


class ConfigError(ValueError):
    """A problem in the site file: which field, on which line, and what is wrong."""

    def __init__(self, path: str, problem: str, line: int | None = None) -> None:
        # path "": the file as a whole (unreadable, not TOML) - whoever reports it names the
        # file, so the message is the problem alone
        where = f" (line {line})" if line else ""
        super().__init__(f"{path}{where}: {problem}" if path else problem)
        self.path = path
        self.line = line
        self.problem = problem


def load_site(path: str | os.PathLike[str]) -> Site:
    file_path = Path(path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError("", f"cannot read the site file: {error.strerror}") from None
    return parse_site(text, file_path.parent)


def parse_site(text: str, base_dir: str | os.PathLike[str] = ".") -> Site:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("", f"not valid TOML: {error}") from None
    return _Reader(text, Path(base_dir)).site(data)


def _line_index(text: str) -> dict[str, int]:
    """Map each field path (`stations[1].connectors[0].phase`) to the line that sets it."""
    lines: dict[str, int] = {}
    counters: dict[str, int] = {}
    latest: dict[str, str] = {}      # header ("stations") -> its latest indexed path ("stations[2]")
    prefix = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        array = re.match(r"^\[\[\s*([A-Za-z0-9_.]+)\s*\]\]", line)
        table = re.match(r"^\[\s*([A-Za-z0-9_.]+)\s*\]", line)
        if array:
            header = array.group(1)
            parent, _, name = header.rpartition(".")
            base = f"{latest.get(parent, parent)}.{name}" if parent else name
            index = counters.get(base, 0)
            counters[base] = index + 1
            prefix = latest[header] = f"{base}[{index}]"
            lines.setdefault(base, number)
            lines.setdefault(prefix, number)
        elif table:
            prefix = table.group(1)
            lines.setdefault(prefix, number)
        else:
            key = re.match(r"^([A-Za-z0-9_\-]+)\s*=", line)
            if key:
                lines.setdefault(f"{prefix}.{key.group(1)}" if prefix else key.group(1), number)
    return lines


class _Reader:
    def __init__(self, text: str, base_dir: Path) -> None:
        self._lines = _line_index(text)
        self._base_dir = base_dir

    # -- helpers ---------------------------------------------------------------------------
    def error(self, path: str, problem: str) -> ConfigError:
        probe = path
        while probe and probe not in self._lines:
            probe = re.sub(r"(\.[^.]*|\[\d+\])$", "", probe) if re.search(r"[.\[]", probe) else ""
        return ConfigError(path, problem, self._lines.get(probe))

    def table(self, data: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise self.error(path, f"must be a table, got {type(data).__name__}")
        for key in data:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise self.error(f"{path}.{key}" if path else key,
                                 f"unknown field (known fields: {known})")
        return data

    def tables(self, data: Any, path: str) -> list[dict[str, Any]]:
        if data is None:
            return []
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise self.error(path, "must be an array of tables ([[...]])")
        return data

    def string(self, table: dict, key: str, path: str, default: str | None = None,
               required: bool = False) -> str | None:
        value = table.get(key, default)
        if value is None:
            if required:
                raise self.error(path, f"missing required field '{key}'")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"{path}.{key}", "must be a non-empty string")
        return value

    def number(self, table: dict, key: str, path: str, default: float | None = None, *,
               positive: bool = True, allow_zero: bool = False) -> float | None:
        value = table.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(f"{path}.{key}", f"must be a number, got {value!r}")
        if not math.isfinite(value):   # TOML has nan and inf: no limit or time means them
            raise self.error(f"{path}.{key}", f"must be a finite number, got {value!r}")
        if positive and (value < 0 or (value == 0 and not allow_zero)):
            rule = "zero or positive" if allow_zero else "positive"
            raise self.error(f"{path}.{key}", f"must be {rule}, got {value!r}")
        return float(value)

    def boolean(self, table: dict, key: str, path: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"{path}.{key}", f"must be true or false, got {value!r}")
        return value

    def string_list(self, table: dict, key: str, path: str, max_chars: int | None = None) -> list[str]:
        value = table.get(key, [])
        if not isinstance(value, list):
            raise self.error(f"{path}.{key}", "must be an array of strings")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise self.error(f"{path}.{key}[{index}]", "must be a non-empty string")
            if max_chars and len(item) > max_chars:
                raise self.error(f"{path}.{key}[{index}]",
                                 f"is {len(item)} characters, at most {max_chars} allowed")
        return value

    # -- sections --------------------------------------------------------------------------
    def site(self, data: dict[str, Any]) -> Site:
        self.table(data, "", _TOP_LEVEL)
        site = self.table(data.get("site"), "site", {"name", "accept_unknown_stations"})
        circuits = self.circuits(data)
        circuit_ids = {c.circuit_id for c in circuits}
        stations = self.stations(data.get("stations"), circuit_ids)
        auth = self.table(data.get("auth"), "auth", {"id_tags"})
        api = self.table(data.get("api"), "api", {f"{role}_tokens" for role in API_ROLES})
        return Site(
            name=self.string(site, "name", "site", default="site"),
            circuits=circuits,
            stations=stations,
            id_tags=frozenset(self.string_list(auth, "id_tags", "auth", ID_TAG_MAX_CHARS)),
            accept_unknown_stations=self.boolean(site, "accept_unknown_stations", "site", False),
            session_defaults=self.session_defaults(data.get("session_defaults")),
            cap_schedule=self.cap_schedule(data.get("cap_schedule")),
            **{f"{role}_tokens": self.api_tokens(api, role) for role in API_ROLES},
            server=self.server(data.get("server")),
            openadr=config_openadr.programs(self, data.get("openadr"), circuit_ids,
                                            self._base_dir),
        )

    def api_tokens(self, api: dict, role: str) -> frozenset[str]:
        """A role's bearer tokens: the site file's list plus SMARTCHARGE_<ROLE>_TOKENS."""
        key, env = f"{role}_tokens", f"SMARTCHARGE_{role.upper()}_TOKENS"
        tokens = self.string_list(api, key, "api")
        from_env = _env_tokens(env)
        for index, token in enumerate(tokens + from_env):
            try:
                check_format(token)
            except SecretFormatError as error:
                where = f"api.{key}[{index}]" if index < len(tokens) else env
                raise self.error(where, str(error)) from None
        return frozenset(tokens + from_env)

    def server(self, data: Any) -> ServerSettings:
        table = self.table(data, "server", {"host", "port", "database", "heartbeat_interval_s",
                                            "call_timeout_s", "dispatch_call_timeout_s",
                                            "limit_answer_wait_s",
                                            "ping_interval_s",
                                            "inbound_retention_days", "settle_s",
                                            "audit_retention_days",
                                            "boot_wait_s", "edge_margin_s",
                                            "queue_drain_s", "store_refusal_summary_s"})
        defaults = ServerSettings()
        port = table.get("port", defaults.port)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise self.error("server.port", f"must be an integer 0..65535, got {port!r}")
        heartbeat = table.get("heartbeat_interval_s", defaults.heartbeat_interval_s)
        if isinstance(heartbeat, bool) or not isinstance(heartbeat, int) or heartbeat <= 0:
            raise self.error("server.heartbeat_interval_s",
                             f"must be a positive whole number of seconds, got {heartbeat!r}")
        database = self.string(table, "database", "server", default=defaults.database)
        if database != ":memory:" and not Path(database).is_absolute():
            database = str(self._base_dir / database)
        call_timeout_s = self.number(table, "call_timeout_s", "server", defaults.call_timeout_s)
        dispatch_call_timeout_s = self.number(table, "dispatch_call_timeout_s", "server",
                                              defaults.dispatch_call_timeout_s)
        return ServerSettings(
            host=self.string(table, "host", "server", default=defaults.host),
            port=port,
            database=database,
            heartbeat_interval_s=heartbeat,
            call_timeout_s=call_timeout_s,
            dispatch_call_timeout_s=dispatch_call_timeout_s,
            limit_answer_wait_s=self.number(table, "limit_answer_wait_s", "server",
                                            defaults.limit_answer_wait_s),
            ping_interval_s=self.number(table, "ping_interval_s", "server",
                                        defaults.ping_interval_s),
            inbound_retention_days=self.number(table, "inbound_retention_days", "server",
                                               defaults.inbound_retention_days),
            audit_retention_days=self.number(table, "audit_retention_days", "server",
                                             defaults.audit_retention_days),
            settle_s=self.number(table, "settle_s", "server", defaults.settle_s,
                                 allow_zero=True),
            boot_wait_s=self.boot_wait_s(table, min(call_timeout_s, dispatch_call_timeout_s)),
            queue_drain_s=self.number(table, "queue_drain_s", "server", defaults.queue_drain_s,
                                      allow_zero=True),
            store_refusal_summary_s=self.number(table, "store_refusal_summary_s", "server",
                                                defaults.store_refusal_summary_s),
            edge_margin_s=self.at_most(table, "edge_margin_s", "server", defaults.edge_margin_s,
                                       EDGE_MARGIN_MAX_S, "stations' clocks further apart "
                                       "need setting (every Heartbeat answer tells the time)"),
        )

    def boot_wait_s(self, table: dict, shortest_call_timeout_s: float) -> float:
        """At most half the shortest timeout a call to the station waits for its boot in:
        dispatch's (`dispatch_call_timeout_s`) or the REST calls' (`call_timeout_s`). Longer, a
        station that reconnects without a reboot and stays silent made every call time out
        before it went out - a decrease counted unanswered, the station uncontrolled - and a
        boot that comes late leaves the answer too little of the timeout."""
        most = shortest_call_timeout_s / 2
        # the default kept within a short call timeout's bound (a key nobody wrote is no error)
        default = min(ServerSettings().boot_wait_s, most)
        return self.at_most(table, "boot_wait_s", "server", default, most,
                            "half the shortest call timeout (server.dispatch_call_timeout_s, "
                            "server.call_timeout_s): our calls wait for a reconnected "
                            "station's boot inside their timeout")

    def at_most(self, table: dict, key: str, path: str, default: float, most: float,
                why: str) -> float:
        """A duration >= 0 and <= `most`, the error saying why."""
        value = self.number(table, key, path, default, allow_zero=True)
        if value > most:
            raise self.error(f"{path}.{key}", f"must be at most {most:g} s ({why}), "
                                              f"got {value!r}")
        return value

    def circuits(self, data: dict[str, Any]) -> tuple[Circuit, ...]:
        grid = self.table(data.get("grid"), "grid", {"limit_w", "limit_a"})
        root = Circuit(GRID_CIRCUIT_ID, None, self.number(grid, "limit_w", "grid"),
                       self.number(grid, "limit_a", "grid"))
        circuits = [root]
        seen = {GRID_CIRCUIT_ID}
        for index, raw in enumerate(self.tables(data.get("circuits"), "circuits")):
            path = f"circuits[{index}]"
            table = self.table(raw, path, {"id", "parent", "limit_w", "limit_a"})
            circuit_id = self.string(table, "id", path, required=True)
            if circuit_id in seen:
                raise self.error(f"{path}.id", f"duplicate circuit id {circuit_id!r}")
            parent = self.string(table, "parent", path, default=GRID_CIRCUIT_ID)
            if parent not in seen:
                raise self.error(f"{path}.parent", f"unknown parent {parent!r}: it must be "
                                 f"'{GRID_CIRCUIT_ID}' or a circuit declared before this one")
            seen.add(circuit_id)
            circuits.append(Circuit(circuit_id, parent, self.number(table, "limit_w", path),
                                    self.number(table, "limit_a", path)))
        return tuple(circuits)

    def stations(self, data: Any, circuit_ids: set[str]) -> tuple[Station, ...]:
        stations: list[Station] = []
        seen: set[str] = set()
        for index, raw in enumerate(self.tables(data, "stations")):
            path = f"stations[{index}]"
            table = self.table(raw, path, {"id", "password", "circuit", "max_current_a",
                                           "max_power_w", "rate_unit", "voltage_v",
                                           "connectors"})
            station_id = self.string(table, "id", path, required=True)
            if len(station_id) > STATION_ID_MAX_CHARS or not _STATION_ID.match(station_id):
                raise self.error(f"{path}.id", f"{station_id!r} is not a usable OCPP identity: "
                                 f"1..{STATION_ID_MAX_CHARS} characters, letters, digits and "
                                 "._-*#@+|= only (no ':' or '/')")
            if station_id in seen:
                raise self.error(f"{path}.id", f"duplicate station id {station_id!r}")
            seen.add(station_id)
            password = self.string(table, "password", path)
            if password is not None and is_hashed(password):
                try:   # a salted hash from `smartcharge hash-secret`: only its form is checked
                    check_format(password)
                except SecretFormatError as error:
                    raise self.error(f"{path}.password", str(error)) from None
            elif password is not None:
                size = len(password.encode("utf-8"))
                if not PASSWORD_MIN_BYTES <= size <= PASSWORD_MAX_BYTES:
                    raise self.error(f"{path}.password", f"is {size} bytes; the OCPP security "
                                     f"profile requires {PASSWORD_MIN_BYTES}..{PASSWORD_MAX_BYTES}")
            circuit = self.string(table, "circuit", path, default=GRID_CIRCUIT_ID)
            if circuit not in circuit_ids:
                raise self.error(f"{path}.circuit", f"unknown circuit {circuit!r}")
            rate_unit = table.get("rate_unit", "A")
            if rate_unit not in ("A", "W"):
                raise self.error(f"{path}.rate_unit", f'must be "A" or "W", got {rate_unit!r}')
            stations.append(Station(
                station_id=station_id,
                circuit_id=circuit,
                connectors=self.connectors(table.get("connectors"), path),
                password=password,
                max_current_a=self.number(table, "max_current_a", path),
                max_power_w=self.number(table, "max_power_w", path),
                rate_unit=RateUnit(rate_unit),
                voltage_v=self.number(table, "voltage_v", path, 230.0),
            ))
        return tuple(stations)

    def connectors(self, data: Any, station_path: str) -> tuple[Connector, ...]:
        path = f"{station_path}.connectors"
        raw_list = self.tables(data, path)
        if not raw_list:
            raise self.error(station_path, "a station needs at least one [[stations.connectors]]")
        connectors: list[Connector] = []
        for index, raw in enumerate(raw_list):
            here = f"{path}[{index}]"
            table = self.table(raw, here, {"id", "phases", "phase", "max_current_a",
                                           "min_current_a", "max_power_w"})
            connector_id = table.get("id")
            if isinstance(connector_id, bool) or not isinstance(connector_id, int) \
                    or connector_id < 1:
                raise self.error(f"{here}.id", f"must be an integer >= 1 (OCPP connectorId), "
                                 f"got {connector_id!r}")
            if any(c.connector_id == connector_id for c in connectors):
                raise self.error(f"{here}.id", f"duplicate connector id {connector_id}")
            phases = table.get("phases", 3)
            if phases not in (1, 3) or isinstance(phases, bool):
                raise self.error(f"{here}.phases", f"must be 1 or 3, got {phases!r}")
            phase = table.get("phase", "L1")
            if phase not in PHASE_NAMES:
                raise self.error(f"{here}.phase", f"must be one of {', '.join(PHASE_NAMES)}, "
                                 f"got {phase!r}")
            max_a = self.number(table, "max_current_a", here, 32.0)
            min_a = self.number(table, "min_current_a", here, 6.0, allow_zero=True)
            if min_a > max_a:
                raise self.error(f"{here}.min_current_a",
                                 f"{min_a:g} A is above max_current_a {max_a:g} A")
            connectors.append(Connector(connector_id, phases, phase, max_a, min_a,
                                        self.number(table, "max_power_w", here)))
        return tuple(connectors)

    def session_defaults(self, data: Any) -> SessionDefaults:
        table = self.table(data, "session_defaults", {"energy_wh", "dwell_s"})
        defaults = SessionDefaults()
        return SessionDefaults(
            energy_wh=self.number(table, "energy_wh", "session_defaults", defaults.energy_wh),
            dwell_s=self.number(table, "dwell_s", "session_defaults", defaults.dwell_s),
        )

    def cap_schedule(self, data: Any) -> tuple[CapWindow, ...]:
        windows = []
        for index, raw in enumerate(self.tables(data, "cap_schedule")):
            path = f"cap_schedule[{index}]"
            table = self.table(raw, path, {"start", "end", "limit_w"})
            start, end = (self.moment(table, key, path) for key in ("start", "end"))
            if end <= start:
                raise self.error(f"{path}.end", "must be after start")
            limit_w = self.number(table, "limit_w", path, allow_zero=True)
            if limit_w is None:
                raise self.error(path, "missing required field 'limit_w'")
            windows.append(CapWindow(start, end, limit_w))
        return tuple(windows)

    def moment(self, table: dict, key: str, path: str):
        value = table.get(key)
        if value is None:
            raise self.error(path, f"missing required field '{key}'")
        if not isinstance(value, str):
            # TOML datetimes arrive as datetime objects; insist on a zone all the same.
            if getattr(value, "tzinfo", None) is None:
                raise self.error(f"{path}.{key}", "must be an RFC 3339 time with a zone, "
                                 "e.g. 2026-01-01T17:00:00Z")
            value = value.isoformat()
        try:
            return parse_ocpp_time(value)
        except ValueError:
            raise self.error(f"{path}.{key}", f"{value!r} is not an RFC 3339 time with a zone, "
                             "e.g. 2026-01-01T17:00:00Z") from None


def _env_tokens(name: str) -> list[str]:
    return [token.strip() for token in os.environ.get(name, "").split(",") if token.strip()]
