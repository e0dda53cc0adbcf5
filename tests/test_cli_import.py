"""`smartcharge --help`, an argument error and `hash-secret` do not import the app.

The app (aiohttp, ocpp, the optimizer and SciPy) costs ~1 s of imports; a user asking for help,
a typo and every subprocess test that only parses arguments should not pay it. Asserted on what
the process imported, not on time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("aiohttp", "ocpp", "scipy", "numpy", "optimizer", "smartcharge.app")

# runs `python -m smartcharge ARGV...` in-process and, at exit (also after argparse's
# SystemExit), writes the names of every module it imported to stderr's last line
PROBE = """
import atexit, json, runpy, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["smartcharge", *sys.argv[1:]]
runpy.run_module("smartcharge", run_name="__main__", alter_sys=True)
"""


def imported_by(*argv: str, stdin: str = "") -> tuple[int, str, set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], input=stdin,
                          capture_output=True, text=True, timeout=60)
    modules = set(json.loads(done.stderr.strip().splitlines()[-1]))
    return done.returncode, done.stdout, modules


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY)


@pytest.mark.parametrize("argv, code", [
    (("--help",), 0),
    (("serve", "--help"), 0),
    (("demo", "--help"), 0),
    (("serve",), 2),                     # argument error: --config is required
    (("no-such-command",), 2),
])
def test_help_and_argument_errors_import_no_heavy_module(argv, code):
    returncode, _, modules = imported_by(*argv)
    assert returncode == code
    assert "smartcharge.cli" in modules   # the probe saw the command run
    assert heavy(modules) == []


def test_hash_secret_imports_no_heavy_module():
    returncode, stdout, modules = imported_by("hash-secret", stdin="a-secret\n")
    assert returncode == 0 and stdout.startswith("scrypt$")
    assert heavy(modules) == []


def test_serve_with_a_missing_site_file_stops_before_importing_the_app(tmp_path):
    returncode, _, modules = imported_by("serve", "--config", str(tmp_path / "none.toml"))
    assert returncode == 2
    assert heavy(modules) == []


FREEZE_PROBE = """
import gc, json, sys
import smartcharge.cli as cli
seen = []
real_freeze = gc.freeze
gc.freeze = lambda: (seen.append("smartcharge.app" in sys.modules), real_freeze())[1]
async def no_serving(*args, **kwargs):
    return None
cli._serve = no_serving
code = cli.main(["serve", "--config", sys.argv[1]])
print(json.dumps({"code": code, "app_imported_at_freeze": seen}))
"""


def test_serve_imports_the_app_before_it_freezes_the_collector(tmp_path):
    # tune_gc_for_serving keeps what exists at start (the site, the imports) out of every
    # collection: the app's ~50 000 objects imported after the freeze were traversed by every
    # full collection until a boot storm's freeze (never, on a small site)
    from importlib.resources import files
    site = tmp_path / "site.toml"
    site.write_text(files("smartcharge.data").joinpath("demo-site.toml").read_text())
    done = subprocess.run([sys.executable, "-c", FREEZE_PROBE, str(site)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SMARTCHARGE_OPERATOR_TOKENS": "x" * 32})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, done.stderr
    assert result["app_imported_at_freeze"] == [True], done.stderr


@pytest.mark.parametrize("flag, value", [("--start", "14:00"), ("--start", "2026-06-01T15:00"),
                                         ("--speed", "0"), ("--hours", "-1"),
                                         ("--hours", "nan")])
def test_a_bad_demo_flag_is_a_usage_error_naming_it(flag, value):
    # was a traceback from deep inside the demo (a start without a zone, a zero speed)
    done = subprocess.run([sys.executable, "-m", "smartcharge", "demo", flag, value],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert flag in done.stderr and "Traceback" not in done.stderr, done.stderr


SCHEMAS_PROBE = """
import gc, json, sys
import smartcharge.cli as cli
from smartcharge.ocpp import fast_schema
seen = []
real_freeze = gc.freeze
gc.freeze = lambda: (seen.append(len(fast_schema._compiled)), real_freeze())[1]
async def no_serving(*args, **kwargs):
    return None
cli._serve = no_serving
code = cli.main(["serve", "--config", sys.argv[1]])
print(json.dumps({"code": code, "compiled_at_freeze": seen}))
"""


def test_serve_compiles_every_schema_before_it_listens(tmp_path):
    # s35-stall: compiled at its first message, a schema held the loop 1-25 ms in the middle
    # of a turn (a set-up's first request of a kind: single steps of 22-25 ms at 5 000 stations)
    from importlib.resources import files

    import ocpp
    site = tmp_path / "site.toml"
    site.write_text(files("smartcharge.data").joinpath("demo-site.toml").read_text())
    done = subprocess.run([sys.executable, "-c", SCHEMAS_PROBE, str(site)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SMARTCHARGE_OPERATOR_TOKENS": "x" * 32,
                               "SMARTCHARGE_SCHEMAS_AT_FIRST_USE": ""})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, done.stderr
    schemas = sum(1 for version in ("v16", "v201")
                  for _ in (Path(ocpp.__file__).parent / version / "schemas").glob("*.json"))
    assert result["compiled_at_freeze"] == [schemas], done.stderr
