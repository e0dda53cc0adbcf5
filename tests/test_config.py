"""The site file: the documented example loads; every mistake names its field and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from smartcharge.config import ConfigError, load_site, parse_site
from smartcharge.model import RateUnit

DOC = Path(__file__).resolve().parents[1] / "docs" / "site-file.md"

MINIMAL = """
[site]
name = "Yard"

[grid]
limit_w = 50000

[[circuits]]
id = "feeder"
limit_a = 63

[[stations]]
id = "CP1"
password = "sixteen-bytes-ok"
circuit = "feeder"

[[stations.connectors]]
id = 1

[[stations]]
id = "CP2"

[[stations.connectors]]
id = 1
phases = 1
phase = "L3"
"""


def documented_example() -> str:
    return re.search(r"```toml\n(.*?)```", DOC.read_text(), re.S).group(1)


def test_documented_example_loads(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(documented_example())
    site = load_site(path)
    assert [c.circuit_id for c in site.circuits] == ["grid", "feeder-1"]
    station = site.station("CP001")
    assert station.rate_unit is RateUnit.AMPS and len(station.connectors) == 2
    assert station.connectors[1].phase == "L2" and station.connectors[1].phases == 1
    assert site.server.database == str(tmp_path / "smartcharge.sqlite")
    assert "04A2B3C4" in site.id_tags and site.cap_schedule[0].limit_w == 60_000


def test_minimal_file_gets_defaults():
    site = parse_site(MINIMAL, "/srv")
    assert site.root.limit_w == 50_000 and site.circuits[1].parent_id == "grid"
    assert site.station("CP2").circuit_id == "grid" and site.station("CP2").password is None
    assert site.server.port == 8080 and not site.accept_unknown_stations
    assert site.server.settle_s == 5.0


def test_boot_wait_from_the_server_table():
    assert parse_site(MINIMAL).server.boot_wait_s == 5.0
    assert parse_site("[server]\nboot_wait_s = 0.5\n" + MINIMAL).server.boot_wait_s == 0.5
    with pytest.raises(ConfigError, match="server.boot_wait_s"):
        parse_site("[server]\nboot_wait_s = -1\n" + MINIMAL)


@pytest.mark.parametrize("value, words", [
    ("nan", "finite"), ("inf", "finite"), ("-0.5", "zero or positive"),
    # our calls to a station that reconnects wait for its boot inside their own timeout: the
    # dispatch's 10 s (half of it at most, so the station's answer has the rest)
    ("6", "at most 5 s"),
])
def test_boot_wait_out_of_bounds_is_a_clear_error(value, words):
    with pytest.raises(ConfigError, match=r"server\.boot_wait_s") as error:
        parse_site(f"[server]\nboot_wait_s = {value}\n" + MINIMAL)
    assert words in str(error.value)


def test_boot_wait_bound_follows_a_shorter_call_timeout():
    text = "[server]\ncall_timeout_s = 4\nboot_wait_s = {}\n" + MINIMAL
    assert parse_site(text.format(2)).server.boot_wait_s == 2.0
    with pytest.raises(ConfigError, match=r"server\.boot_wait_s.*at most 2 s"):
        parse_site(text.format(3))
    # not written: the default (5 s), within the bound
    assert parse_site("[server]\ncall_timeout_s = 4\n" + MINIMAL).server.boot_wait_s == 2.0


def test_dispatch_call_timeout_is_read_and_bounds_the_boot_wait():
    """dispatch's call timeout (10 s) as the site file sets it: the serve's dispatcher waits
    that long for a station's answer, and a reconnected station's boot is waited for within
    half of it, as within half of the REST calls' timeout."""
    from smartcharge.model import DISPATCH_CALL_TIMEOUT_S
    assert parse_site(MINIMAL).server.dispatch_call_timeout_s == DISPATCH_CALL_TIMEOUT_S == 10.0
    text = "[server]\ndispatch_call_timeout_s = 3\nboot_wait_s = {}\n" + MINIMAL
    assert parse_site(text.format(1.5)).server.dispatch_call_timeout_s == 3.0
    with pytest.raises(ConfigError, match=r"server\.boot_wait_s.*at most 1\.5 s"):
        parse_site(text.format(2))
    assert parse_site("[server]\ndispatch_call_timeout_s = 3\n" + MINIMAL
                      ).server.boot_wait_s == 1.5
    for bad in ("0", "-1", "nan"):
        with pytest.raises(ConfigError, match=r"server\.dispatch_call_timeout_s"):
            parse_site(f"[server]\ndispatch_call_timeout_s = {bad}\n" + MINIMAL)


def test_the_limit_answers_wait_is_read_from_the_server_table():
    """How long a limit's answer waits for the stations (site/applied.py): 15 s unless the
    site file says otherwise (the tests with a station silent on purpose shorten it)."""
    from smartcharge.site.applied import APPLY_WAIT_S
    assert parse_site(MINIMAL).server.limit_answer_wait_s == APPLY_WAIT_S == 15.0
    assert parse_site("[server]\nlimit_answer_wait_s = 4.5\n" + MINIMAL
                      ).server.limit_answer_wait_s == 4.5
    for bad in ("0", "-1", "nan"):
        with pytest.raises(ConfigError, match=r"server\.limit_answer_wait_s"):
            parse_site(f"[server]\nlimit_answer_wait_s = {bad}\n" + MINIMAL)


def test_edge_margin_from_the_server_table():
    assert parse_site(MINIMAL).server.edge_margin_s == 5.0
    assert parse_site("[server]\nedge_margin_s = 0\n" + MINIMAL).server.edge_margin_s == 0.0
    for bad in ("-1", "nan", "3600"):
        with pytest.raises(ConfigError, match=r"server\.edge_margin_s"):
            parse_site(f"[server]\nedge_margin_s = {bad}\n" + MINIMAL)


def test_settle_time_from_the_server_table():
    site = parse_site("[server]\nsettle_s = 2.5\n" + MINIMAL)
    assert site.server.settle_s == 2.5
    with pytest.raises(ConfigError, match="server.settle_s"):
        parse_site("[server]\nsettle_s = -1\n" + MINIMAL)


@pytest.mark.parametrize("change, path, line, words", [
    (('password = "sixteen-bytes-ok"', 'password = "short"'),
     "stations[0].password", 14, "5 bytes"),
    (('password = "sixteen-bytes-ok"', 'password = "this-one-is-far-too-long"'),
     "stations[0].password", 14, "24 bytes"),
    (('phase = "L3"', 'phase = "L4"'), "stations[1].connectors[0].phase", 26, "L1"),
    (("phases = 1", "phases = 2"), "stations[1].connectors[0].phases", 25, "1 or 3"),
    (('id = "CP2"', 'id = "CP1"'), "stations[1].id", 21, "duplicate"),
    (('circuit = "feeder"', 'circuit = "nowhere"'), "stations[0].circuit", 15, "unknown"),
    (("limit_w = 50000", "limit_w = -5"), "grid.limit_w", 6, "positive"),
    (("limit_a = 63", "limit_a = 63\nparent = \"later\""), "circuits[0].parent", 11,
     "before"),
    (('name = "Yard"', 'name = "Yard"\ncolour = "red"'), "site.colour", 4, "unknown field"),
    (('id = "CP2"', 'id = "CP/2"'), "stations[1].id", 21, "identity"),
])
def test_errors_name_field_line_and_problem(change, path, line, words):
    text = MINIMAL.replace(*change, 1)
    with pytest.raises(ConfigError) as error:
        parse_site(text)
    assert error.value.path == path
    assert error.value.line == line
    assert words in str(error.value)
    assert str(error.value).startswith(f"{path} (line {line})")


def test_station_without_connectors_is_an_error():
    text = MINIMAL.replace('[[stations.connectors]]\nid = 1\nphases = 1\nphase = "L3"\n', "")
    with pytest.raises(ConfigError, match=r"stations\[1\].*at least one"):
        parse_site(text)


def test_bad_toml_and_bad_times():
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_site("[site\nname=1")
    text = MINIMAL + '\n[[cap_schedule]]\nstart = "tomorrow"\nend = "2026-01-01T20:00:00Z"\n' \
                     "limit_w = 1000\n"
    with pytest.raises(ConfigError, match=r"cap_schedule\[0\].start .*RFC 3339"):
        parse_site(text)


def test_tokens_from_environment(monkeypatch):
    monkeypatch.setenv("SMARTCHARGE_OPERATOR_TOKENS", "a, b")
    assert parse_site(MINIMAL).operator_tokens == frozenset({"a", "b"})


def test_api_tokens_per_role_hashed_or_plain_and_a_bad_hash_is_named(tmp_path, monkeypatch):
    from smartcharge.credentials import verify_secret
    path = tmp_path / "site.toml"
    path.write_text(documented_example())
    site = load_site(path)
    (reader,) = site.reader_tokens
    assert verify_secret(reader, "reader-secret") and site.admin_tokens == frozenset()
    bad = MINIMAL + '\n[api]\nreader_tokens = ["scrypt$16384$8$1$nope"]\n'
    with pytest.raises(ConfigError, match=r"api\.reader_tokens\[0\]"):
        parse_site(bad)
    monkeypatch.setenv("SMARTCHARGE_ADMIN_TOKENS", "fine, scrypt$2$1$1$x$y")
    with pytest.raises(ConfigError, match="SMARTCHARGE_ADMIN_TOKENS"):
        parse_site(MINIMAL)
