"""The docs' tables against the code they describe, where a table can be checked mechanically
and drifts easily: a route, a site-file key, a flag or a simulator quirk added, a test renamed,
a heading moved (session 33 found a quirk, a subcommand's section and two table rows missing
by hand). The OpenAPI document against the routes is tests/test_api.py's; these read the
Markdown a user reads first."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

from smartcharge.cli import build_parser
from smartcharge.config import ConfigError, parse_site

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
UNKNOWN_KEY = "zz_not_a_key"


def _text(*names: str) -> str:
    return "\n".join((DOCS / name).read_text(encoding="utf-8") for name in names)


# -- REST routes -----------------------------------------------------------------------------

def _api_routes() -> list[tuple[str, str]]:
    from smartcharge.app import create_app
    from tests.conftest import make_site
    app = create_app(make_site(), db_path=":memory:")
    return sorted({(route.method, route.resource.canonical) for route in app.router.routes()
                   if route.method != "HEAD" and route.resource.canonical.startswith("/api")})


def _path_pattern(path: str) -> re.Pattern:
    """The path as the docs may write it: a `{placeholder}` under any name or an example
    value without a `/` (`CP001`, `17`, `dr-17`), ending where the path ends."""
    pattern = re.escape(path)
    pattern = re.sub(r"\\\{[^}]*\\\}", r"(?:\\{[^}]*\\}|[A-Za-z0-9:_%.-]+)", pattern)
    return re.compile(pattern + r"(?![A-Za-z0-9/_.-])")


def test_every_api_route_is_in_docs_api_md_or_api_site_md():
    # `GET /api/stations[/{id}]` documents two routes: the optional part counts as written
    lines = _text("api.md", "api-site.md").replace("[", "").replace("]", "").splitlines()
    routes = _api_routes()
    assert len(routes) >= 30
    missing = []
    for method, path in routes:
        pattern = _path_pattern(path)
        # a GET is the path itself; any other method must be named on a line with the path
        if not any(pattern.search(line) and (method == "GET" or method in line)
                   for line in lines):
            missing.append(f"{method} {path}")
    assert missing == [], "routes registered but not in docs/api.md or docs/api-site.md"


def test_the_openapi_document_lists_the_answers_every_route_may_give():
    """A route that needs a token may answer 401, 403 and 429 (docs/api.md: the address's
    guessing throttle, a right token too); one that reads a body may answer 400 (no JSON, or a
    Content-Encoding it does not decode): the document listed 429 nowhere and 400 only on the
    site routes."""
    from smartcharge.api.openapi import openapi_document
    missing = []
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "delete"):
                continue
            answers = set(operation["responses"])
            needed = ({"401", "403", "429"} if operation.get("security") else set()) | (
                {"400"} if "requestBody" in operation else set())
            if needed - answers:
                missing.append(f"{method.upper()} {path}: {sorted(needed - answers)}")
    assert missing == []


def test_the_openapi_description_names_every_route_without_a_token():
    """Its text said "every route but this document needs a token" while `GET /api/health`
    needs none either (session 33 made it public; seen in session 36)."""
    from smartcharge.api.openapi import openapi_document
    document = openapi_document()
    public = [path for path, item in document["paths"].items() for method, operation in
              item.items() if method == "get" and not operation.get("security")]
    assert sorted(public) == ["/api/health", "/api/openapi.json"]
    description = document["info"]["description"]
    assert all(path.rsplit("/", 1)[1] in description for path in public), description


def test_every_energy_flag_of_the_bill_is_in_docs_api_md():
    """A billing flag a row can carry must be explained where the bill is (api.md's "All
    flags"): the energy computation's and the ledger's named ones."""
    from smartcharge.ledger import BILLED_ELSEWHERE, SECOND_STOP
    from smartcharge.ledger_events import REUSED_ID
    from smartcharge.metering import ENERGY_FLAGS
    api_md = _text("api.md")
    flags = set(ENERGY_FLAGS) | {SECOND_STOP, BILLED_ELSEWHERE, REUSED_ID}
    missing = sorted(flag for flag in flags if f"`{flag}`" not in api_md)
    assert missing == []


def test_every_query_parameter_and_body_field_of_the_openapi_document_is_in_the_docs():
    """What a client may send (`?station=`, `?timeout_s=`, `"reduction_w"`) is explained where
    a user reads, not only in the machine-readable document (checked by hand in session 36)."""
    from smartcharge.api.openapi import openapi_document
    document = openapi_document()
    docs = _text("api.md", "api-site.md", "ocpp201.md")

    def fields(schema: dict) -> set[str]:
        if "$ref" in schema:
            schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        names = set(schema.get("properties", {}))
        for key in ("oneOf", "anyOf", "allOf"):
            for sub in schema.get(key, []):
                names |= fields(sub)
        return names

    sent = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "delete"):
                continue
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    sent.add((f"{method.upper()} {path} ?", parameter["name"], r"[?&`]"))
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            for name in fields(body["schema"]) if body else ():
                sent.add((f"{method.upper()} {path} body", name, r'["`]'))
    assert len(sent) >= 40
    missing = sorted(f"{where} {name}" for where, name, before in sent
                     if not re.search(rf"{before}{name}\b", docs))
    assert missing == []


# -- the site file ---------------------------------------------------------------------------

MINIMAL = """
[[stations]]
id = "CP1"
[[stations.connectors]]
id = 1
"""

# Where an unknown key goes to make the parser list a table's known fields, and the name the
# docs give that table.
SITE_TABLES = {
    "": ("{key} = 1\n" + MINIMAL, ""),
    "site": ("[site]\n{key} = 1\n" + MINIMAL, "site."),
    "server": ("[server]\n{key} = 1\n" + MINIMAL, "server."),
    "grid": ("[grid]\n{key} = 1\n" + MINIMAL, "grid."),
    "circuits": ('[[circuits]]\nid = "c1"\n{key} = 1\n' + MINIMAL, "circuits[]."),
    "stations": ('[[stations]]\nid = "CP1"\n{key} = 1\n[[stations.connectors]]\nid = 1\n',
                 "stations[]."),
    "connectors": ('[[stations]]\nid = "CP1"\n[[stations.connectors]]\nid = 1\n{key} = 1\n',
                   "stations[].connectors[]."),
    "auth": ("[auth]\n{key} = 1\n" + MINIMAL, "auth."),
    "session_defaults": ("[session_defaults]\n{key} = 1\n" + MINIMAL, "session_defaults."),
    "api": ("[api]\n{key} = 1\n" + MINIMAL, "api."),
    "cap_schedule": ('[[cap_schedule]]\nstart = "2026-01-01T00:00:00Z"\n'
                     'end = "2026-01-01T01:00:00Z"\nlimit_w = 1\n{key} = 1\n' + MINIMAL,
                     "cap_schedule[]."),
}


def known_fields(text: str) -> set[str]:
    """The keys the parser takes in one table: the ones its unknown-key error lists."""
    with pytest.raises(ConfigError) as raised:
        parse_site(text.format(key=UNKNOWN_KEY))
    problem = raised.value.problem
    assert "known fields: " in problem, problem
    return set(problem.split("known fields: ", 1)[1].rstrip(")").split(", "))


def documented_fields() -> set[str]:
    """The full names in the first cell of site-file.md's field table: `server.host`, and a
    bare `limit_a` after `circuits[].limit_w` in the same cell is `circuits[].limit_a`."""
    names = set()
    for line in _text("site-file.md").splitlines():
        if not line.startswith("| `"):
            continue
        section = ""
        for token in re.findall(r"`([^`]+)`", line.split("|")[1]):
            if "." in token:
                section, _, key = token.rpartition(".")
                section += "."
            else:
                key = token
            names.add(section + key)
    return names


@pytest.mark.parametrize("table", sorted(SITE_TABLES))
def test_every_site_file_key_is_in_docs_site_file_md(table):
    text, prefix = SITE_TABLES[table]
    keys = known_fields(text)
    assert keys, table
    documented = documented_fields()
    if table == "":   # the top-level tables: each is the start of some documented field
        missing = [key for key in keys if not any(name.startswith(key) for name in documented)]
    else:   # a key that is a table of its own (`connectors`) is documented by its fields
        missing = [key for key in sorted(keys)
                   if not any(name == prefix + key or name.startswith(prefix + key + "[")
                              for name in documented)]
    assert missing == [], f"[{table or 'top level'}] keys the parser takes, not in the table"


def _default_cells() -> dict[str, str]:
    """site-file.md's first cell's names -> the default its second cell gives, as written."""
    cells = {}
    for line in _text("site-file.md").splitlines():
        if line.startswith("| `"):
            names, default = line.split("|")[1:3]
            values = re.findall(r'`("[^"]*"|[^`]+)`|\b(\d+(?:\.\d+)?)\b', default)
            values = [quoted or number for quoted, number in values]
            section = ""        # `session_defaults.energy_wh`, `dwell_s`: the same table
            for name, value in zip(re.findall(r"`([^`]+)`", names), values):
                if "." in name:
                    section = name.rpartition(".")[0] + "."
                cells[name if "." in name else section + name] = value
    return cells


def test_the_defaults_in_docs_site_file_md_are_the_parsers():
    """`server.limit_answer_wait_s | 15`: a default the table gives is the one a site file
    without the key gets (site, server, station, connector and session defaults)."""
    site = parse_site(MINIMAL)
    station = site.stations[0]
    actual = {f"server.{name}": value for name, value in vars(site.server).items()}
    actual |= {f"stations[].{name}": value for name, value in vars(station).items()}
    actual |= {f"stations[].connectors[].{name}": value
               for name, value in vars(station.connectors[0]).items()}
    actual |= {"site.name": site.name, "site.accept_unknown_stations":
               site.accept_unknown_stations, "stations[].rate_unit": station.rate_unit.value,
               "stations[].circuit": station.circuit_id, "session_defaults.energy_wh":
               site.session_defaults.energy_wh,
               "session_defaults.dwell_s": site.session_defaults.dwell_s}

    def as_written(value) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        return f'"{value}"' if isinstance(value, str) else f"{float(value):g}"

    cells = {name: f"{float(written):g}" if written[0].isdigit() else written
             for name, written in _default_cells().items() if name in actual}
    assert len(cells) >= 25
    wrong = [f"{name}: docs {written}, parser {as_written(actual[name])}"
             for name, written in sorted(cells.items()) if as_written(actual[name]) != written]
    assert wrong == []

def _toml_blocks(doc: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", _text(doc), re.S)


def test_the_site_file_example_in_docs_site_file_md_is_a_valid_site_file():
    (example,) = _toml_blocks("site-file.md")
    site = parse_site(example)
    assert site.name == "Depot Nord" and [s.station_id for s in site.stations] == ["CP001"]


def test_the_openadr_examples_in_docs_openadr_md_are_valid(tmp_path):
    """With the files they name in place and a site around them (the circuit they limit)."""
    for name in ("ven-cert.pem", "ven-key.pem", "vtn-ca.pem"):
        (tmp_path / name).write_text("placeholder")
    site_around = ('[[circuits]]\nid = "feeder-1"\n' + MINIMAL)
    programs = [program for example in _toml_blocks("openadr.md")
                for program in parse_site(example + site_around, tmp_path).openadr]
    assert [(p.program, p.version) for p in programs] == [("evening-peak", "2.0b"),
                                                           ("gac", "3")]


@pytest.mark.parametrize("version", ["2.0b", "3"])
def test_every_openadr_key_is_in_docs_openadr_md(version):
    text = ('[[openadr]]\nprogram = "p"\nversion = "%s"\nvtn_url = "http://127.0.0.1:1/"\n'
            'ven_name = "v"\n{key} = 1\n' % version + MINIMAL)
    keys = known_fields(text)
    openadr_md = _text("openadr.md")
    # named in the text, or set in its example tables (`key = ...`, `# key = ...`)
    missing = [key for key in sorted(keys) if f"`{key}`" not in openadr_md
               and not re.search(rf"^(# )?{key} = ", openadr_md, re.M)]
    assert missing == [], f"[[openadr]] version {version}: keys not in docs/openadr.md"


# -- OCPP 2.0.1 ------------------------------------------------------------------------------

def _first_cells(doc: str, heading: str) -> str:
    """The first cells of the table under a `## heading` of a doc, as one text."""
    section = _text(doc).split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line.split("|")[1] for line in section.splitlines()
                     if line.startswith("|"))


def test_every_message_a_201_station_may_send_us_is_in_docs_ocpp201_md():
    import inspect

    from smartcharge.ocpp.adapters import ADAPTER_CLASSES, OCPP201
    handled = {member._on_action for _, member in inspect.getmembers(ADAPTER_CLASSES[OCPP201])
               if getattr(member, "_on_action", None)}
    assert len(handled) >= 20
    table = _first_cells("ocpp201.md", "Messages from the station")
    missing = sorted(action for action in handled
                     if not re.search(rf"\b{action}\b", table))
    assert missing == [], "2.0.1 messages handled but not in the table"


def test_every_201_remote_command_is_in_docs_ocpp201_md():
    from smartcharge.ocpp.ports import COMMAND_SETS
    table = _first_cells("ocpp201.md", "Remote commands (2.0.1)")
    missing = [name for name in sorted(COMMAND_SETS["ocpp2.0.1"].catalogue)
               if f"`{name}`" not in table]
    assert missing == [], "2.0.1 command routes not in the table"


# -- the simulator ---------------------------------------------------------------------------

def test_every_simulator_quirk_is_in_docs_simulator_md():
    import dataclasses

    from smartcharge.sim.spec import Quirks
    simulator_md = _text("simulator.md")
    missing = [field.name for field in dataclasses.fields(Quirks)
               if f"`{field.name}`" not in simulator_md]
    assert missing == [], "Quirks fields not in docs/simulator.md"


# -- the command line ------------------------------------------------------------------------

def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_command_and_flag_is_in_docs_cli_md(name):
    """Each subcommand has its section in cli.md; its flags are there (the demo's in
    demo.md's flag table, which cli.md points to)."""
    cli_md = _text("cli.md")
    assert re.search(rf"^## `?smartcharge {re.escape(name)}`?", cli_md, re.M), name
    flags_doc = _text("demo.md") if name == "demo" else cli_md
    flags = [option for action in _subcommands()[name]._actions
             for option in action.option_strings if option.startswith("--")
             and option != "--help"]
    missing = [flag for flag in flags if f"`{flag}" not in flags_doc]
    assert missing == [], f"smartcharge {name}: flags not documented"


def test_the_help_names_both_ocpp_versions_as_the_readme_does():
    """`smartcharge --help` and `serve --help` said "OCPP 1.6J" alone since session 1; the
    server has spoken 2.0.1 on the same endpoint since (README.md, docs/ocpp201.md)."""
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    # and the package's description (`pip show smartcharge`): "OCPP 1.6J" alone until s36
    texts = [build_parser().description, _subcommands()["serve"].description,
             project["description"]]
    for text in texts:
        assert "1.6J" in text and "2.0.1" in text, text


def test_the_readmes_test_command_is_the_one_ci_runs():
    """.ci/run says it runs exactly the README's test command: the same line in both."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    (command,) = [line for line in ci_lines if line.startswith("python3 -m pip install")]
    assert command.replace("pip install -q ", "pip install ") in readme


def test_every_settings_field_the_docs_name_exists():
    """`ControllerSettings.declined_w`, `DispatchSettings.profile_lifetime_s`, ...: a knob the
    docs tell a reader to turn must be there under that name."""
    import dataclasses

    from smartcharge.auth_throttle import ThrottleSettings
    from smartcharge.model import ServerSettings
    from smartcharge.ocpp.port import PortSettings
    from smartcharge.site.controller import ControllerSettings
    from smartcharge.site.dispatch import DispatchSettings
    from smartcharge.site.estimates import EstimateSettings
    classes = {cls.__name__: {field.name for field in dataclasses.fields(cls)} for cls in (
        ControllerSettings, DispatchSettings, ServerSettings, ThrottleSettings, PortSettings,
        EstimateSettings)}
    text = "\n".join([_text(*sorted(p.name for p in DOCS.glob("*.md"))),
                      (ROOT / "README.md").read_text(encoding="utf-8")])
    named = re.findall(r"\b([A-Z]\w*Settings)\.(\w+)", text)
    assert len(named) >= 5
    missing = sorted({f"{cls}.{field}" for cls, field in named
                      if field not in classes.get(cls, ())})
    assert missing == []


# set by `serve` for the store's writer process it starts, not by a user
INTERNAL_ENVIRONMENT = {"SMARTCHARGE_WRITER_PARENT"}


def test_every_environment_variable_is_in_the_docs_and_every_one_they_name_is_read():
    """`SMARTCHARGE_SCHEMAS_AT_FIRST_USE`, `SMARTCHARGE_<ROLE>_TOKENS`: a name the code builds
    (an f-string's literal parts around its fields) is in the docs or the README, and a name
    there is one the code reads."""
    readable = []
    for file in sorted((ROOT / "smartcharge").rglob("*.py")):
        nodes = list(ast.walk(ast.parse(file.read_text(encoding="utf-8"))))
        in_fstrings = {id(part) for node in nodes if isinstance(node, ast.JoinedStr)
                       for part in node.values}
        for node in nodes:
            if isinstance(node, ast.Constant) and id(node) not in in_fstrings and isinstance(
                    node.value, str) and re.fullmatch(r"SMARTCHARGE_[A-Z0-9_]+", node.value):
                parts = [node.value]
            elif isinstance(node, ast.JoinedStr) and isinstance(
                    node.values[0], ast.Constant) and str(node.values[0].value).startswith(
                    "SMARTCHARGE_"):
                parts = [v.value if isinstance(v, ast.Constant) else None for v in node.values]
            else:
                continue
            if "".join(p or "" for p in parts) not in INTERNAL_ENVIRONMENT:
                readable.append(re.compile("".join(
                    re.escape(p) if p is not None else r"[A-Z0-9_<>]+" for p in parts) + "$"))
    assert len(readable) >= 3
    text = "\n".join([_text(*sorted(p.name for p in DOCS.glob("*.md"))),
                      (ROOT / "README.md").read_text(encoding="utf-8")])
    named = set(re.findall(r"SMARTCHARGE_[A-Z0-9_<>]+", text))
    undocumented = [pattern.pattern for pattern in readable
                    if not any(pattern.match(name) for name in named)]
    assert undocumented == []
    unread = sorted(name for name in named if not any(p.match(name) for p in readable))
    assert unread == []


def _github_anchor(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_in_the_docs_and_the_readme_resolves():
    """`[site-file.md](site-file.md#declare-every-connector)`, `(../smartcharge/site/...)`:
    the file exists and, in a Markdown file, the heading does."""
    broken = []
    for doc in [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]:
        for link in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", link):      # http:, https:, mailto:
                continue
            path, _, anchor = link.partition("#")
            target = doc.parent / path if path else doc
            if not target.exists():
                broken.append(f"{doc.name}: {link}")
            elif anchor and target.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", target.read_text(encoding="utf-8"), re.M)
                if anchor not in {_github_anchor(h) for h in headings}:
                    broken.append(f"{doc.name}: {link}")
    assert broken == []


def test_every_file_the_docs_name_exists():
    """`site/applied.py`, `optimizer/stable.py`, `smartcharge/data/demo-site.toml`: a path is
    a file of the tree ending so; a bare name (`warm_plans.py`, in a layout table) is a file
    somewhere in it (600 named; session 36 checked them by hand)."""
    files = {path.relative_to(ROOT).as_posix() for folder in (
        "smartcharge", "optimizer", "benchmarks", "tests", "docs", ".ci") for path in (
        ROOT / folder).rglob("*") if path.is_file()}
    names = {file.rsplit("/", 1)[-1] for file in files}
    missing, named = [], 0
    for doc in [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]:
        for path in re.findall(r"`/?([\w./-]+\.(?:py|toml|json|js|css|html))`",
                               doc.read_text(encoding="utf-8")):
            named += 1
            if not (any(file == path or file.endswith("/" + path) for file in files)
                    if "/" in path else path in names):
                missing.append(f"{doc.name}: {path}")
    assert named > 300
    assert missing == []


# -- the tests the docs name -----------------------------------------------------------------

def _named_tests() -> list[tuple[str, str, str | None]]:
    """Every `tests/x.py` and `tests/x.py::name[::name]` the docs and the README name."""
    found = []
    for doc in [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]:
        text = doc.read_text(encoding="utf-8")
        for match in re.finditer(r"(tests/[\w/]+\.py)((?:::\w+)*)", text):
            found.append((doc.name, match.group(1), match.group(2) or None))
    return found


def test_every_test_the_docs_name_exists():
    named = _named_tests()
    assert len(named) > 100      # promises.md alone names well over a hundred
    missing = []
    definitions: dict[str, set[str]] = {}
    for doc, path, names in named:
        file = ROOT / path
        if not file.is_file():
            missing.append(f"{doc}: {path}")
            continue
        if path not in definitions:
            tree = ast.parse(file.read_text(encoding="utf-8"))
            definitions[path] = {node.name for node in ast.walk(tree) if isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        for name in (names or "").split("::")[1:]:
            if name not in definitions[path]:
                missing.append(f"{doc}: {path}::{name}")
    assert missing == [], "the docs name tests that do not exist"
