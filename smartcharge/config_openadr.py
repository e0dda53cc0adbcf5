"""The site file's `[[openadr]]` programs (docs/openadr.md), checked like the rest of the file:
a `ConfigError` names the field (`openadr[1].vtn_url`), its line and what is wrong."""

from __future__ import annotations

import math

import os
import re
from pathlib import Path
from typing import Any

from smartcharge.model import GRID_CIRCUIT_ID, OpenAdrProgram

VERSIONS = ("2.0b", "3")
_PROGRAM = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")   # it becomes part of "openadr:<program>/<event>"
_COMMON = {"program", "version", "vtn_url", "ven_name", "ven_id", "circuit", "poll_interval_s",
           "report_interval_s", "opt_in", "randomize_start", "simple_levels", "simple_levels_w"}
_ONLY = {"2.0b": {"cert", "key", "ca_file", "vtn_fingerprint"},
         "3": {"token_url", "client_id", "client_secret", "bearer_token", "callback_url"}}


def programs(reader, data: Any, circuit_ids: set[str], base_dir: Path
             ) -> tuple[OpenAdrProgram, ...]:
    out: list[OpenAdrProgram] = []
    for index, raw in enumerate(reader.tables(data, "openadr")):
        path = f"openadr[{index}]"
        version = raw.get("version") if isinstance(raw, dict) else None
        if isinstance(version, (int, float)) and not isinstance(version, bool) and version == 3:
            version = "3"
        if version not in VERSIONS:
            raise reader.error(f"{path}.version", f'must be "2.0b" or "3", got {version!r}')
        table = reader.table(raw, path, _COMMON | _ONLY[version])
        name = reader.string(table, "program", path, required=True)
        if not _PROGRAM.match(name):
            raise reader.error(f"{path}.program", "1..64 letters, digits and ._- only (it names "
                               "the limits: openadr:<program>/<event>)")
        if any(p.program == name for p in out):
            raise reader.error(f"{path}.program", f"duplicate program {name!r}")
        url = reader.string(table, "vtn_url", path, required=True)
        if not re.match(r"^https?://[^/\s]+", url):
            raise reader.error(f"{path}.vtn_url", f"must be an http:// or https:// URL, got "
                               f"{url!r}")
        circuit = reader.string(table, "circuit", path, default=GRID_CIRCUIT_ID)
        if circuit not in circuit_ids:
            raise reader.error(f"{path}.circuit", f"unknown circuit {circuit!r}")
        fields = dict(
            program=name, version=version, vtn_url=url.rstrip("/"),
            ven_name=reader.string(table, "ven_name", path, required=True),
            ven_id=reader.string(table, "ven_id", path), circuit=circuit,
            poll_interval_s=reader.number(table, "poll_interval_s", path, 30.0),
            report_interval_s=reader.number(table, "report_interval_s", path, 60.0),
            opt_in=reader.boolean(table, "opt_in", path, True),
            randomize_start=reader.boolean(table, "randomize_start", path, True),
            simple_levels=_levels(reader, table, "simple_levels", path, fraction=True)
            or (0.75, 0.5, 0.0),
            simple_levels_w=_levels(reader, table, "simple_levels_w", path, fraction=False))
        if version == "2.0b":
            fields.update(_tls(reader, table, path, base_dir))
        else:
            fields.update(_oauth(reader, table, path))
        out.append(OpenAdrProgram(**fields))
    return tuple(out)


def _levels(reader, table: dict, key: str, path: str, *, fraction: bool):
    value = table.get(key)
    if value is None:
        return None
    where = f"{path}.{key}"
    if not isinstance(value, list) or len(value) != 3 or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
            or v < 0 for v in value):   # TOML's nan passes every comparison
        unit = "fractions of the cap (0..1)" if fraction else "watts"
        raise reader.error(where, f"must be 3 finite numbers >= 0 for SIMPLE levels 1, 2, 3 "
                                  f"({unit})")
    if fraction and any(v > 1 for v in value):
        raise reader.error(where, "fractions of the cap must be between 0 and 1")
    if any(b > a for a, b in zip(value, value[1:])):
        raise reader.error(where, "a higher SIMPLE level must not allow more than a lower one")
    return tuple(float(v) for v in value)


def _tls(reader, table: dict, path: str, base_dir: Path) -> dict:
    files = {}
    for key in ("cert", "key", "ca_file"):
        name = reader.string(table, key, path)
        if name is not None:
            file = Path(name) if Path(name).is_absolute() else base_dir / name
            if not file.is_file():
                raise reader.error(f"{path}.{key}", f"no such file: {file}")
            name = str(file)
        files[key] = name
    if (files["cert"] is None) != (files["key"] is None):
        raise reader.error(f"{path}.{'key' if files['key'] is None else 'cert'}",
                           "give the client certificate and its key together")
    if files["cert"] is not None and files["ca_file"] is None:
        raise reader.error(f"{path}.ca_file", "with a client certificate, give the CA of the "
                           "VTN's server certificate too")
    return {**files, "vtn_fingerprint": reader.string(table, "vtn_fingerprint", path)}


def secret_env(program: str, key: str) -> str:
    """SMARTCHARGE_OPENADR_<PROGRAM>_<KEY>: a secret kept out of the site file."""
    return f"SMARTCHARGE_OPENADR_{re.sub(r'[^A-Za-z0-9]', '_', program).upper()}_{key.upper()}"


def _oauth(reader, table: dict, path: str) -> dict:
    fields = {key: reader.string(table, key, path) for key in (
        "token_url", "client_id", "client_secret", "bearer_token", "callback_url")}
    for key in ("client_secret", "bearer_token"):
        from_env = os.environ.get(secret_env(table.get("program", ""), key), "").strip()
        if from_env:
            fields[key] = from_env
    if (fields["client_id"] is None) != (fields["client_secret"] is None):
        missing = "client_secret" if fields["client_secret"] is None else "client_id"
        raise reader.error(f"{path}.{missing}", "give client_id and client_secret together")
    if fields["bearer_token"] is not None and fields["client_id"] is not None:
        raise reader.error(f"{path}.bearer_token", "give a bearer token or client credentials, "
                           "not both")
    if fields["bearer_token"] is None and fields["client_id"] is None:
        raise reader.error(path, "an OpenADR 3 VTN needs credentials: client_id and "
                           "client_secret (OAuth2 client credentials) or bearer_token")
    for key in ("token_url", "callback_url"):
        if fields[key] is not None and not re.match(r"^https?://[^/\s]+", fields[key]):
            raise reader.error(f"{path}.{key}", "must be an http:// or https:// URL")
    if fields["callback_url"] is not None:
        fields["callback_url"] = fields["callback_url"].rstrip("/")
    return fields
