"""The demo's command-line flags (`smartcharge demo`, `python -m smartcharge.demo`)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from smartcharge.clock import parse_ocpp_time

DEFAULT_START = "2026-06-01T00:00:00Z"
DEFAULT_SPEED = 240.0            # a 24 h day in 6 minutes; faster runs stretch the server's
                                 # real-time latencies over minutes of site time


def _positive(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _start(text: str) -> str:
    try:
        parse_ocpp_time(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"{error} (e.g. {DEFAULT_START})") from None
    return text


def default_site_path() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "demo-site.toml"


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", type=Path, default=None,
                        help="site file (TOML); default: the embedded demo site")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument("--port", type=int, default=8080,
                        help="port for the dashboard, API and OCPP (0: any free port)")
    parser.add_argument("--insecure-open-api", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="serve the API and dashboard without token checks (only on a "
                             "loopback --host, refused on any other); by default the API wants "
                             "the site file's tokens, as `serve` does, and the dashboard link "
                             "printed carries the operator's")
    parser.add_argument("--hours", type=_positive, default=24.0, help="simulated hours to run")
    parser.add_argument("--speed", type=_positive, default=DEFAULT_SPEED,
                        help="simulated seconds per real second")
    parser.add_argument("--start", type=_start, default=DEFAULT_START,
                        help="simulated start time, RFC 3339 UTC (default %(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="seed for the cars (same seed, same day)")
    parser.add_argument("--dr-notice-min", type=float, default=30.0,
                        help="minutes between the utility's announcement and the event (0: at once)")
    parser.add_argument("--dr-via", choices=("openadr", "rest"), default="openadr",
                        help="how the utility sends its event: from an OpenADR 2.0b VTN the demo "
                             "starts (default) or POST /api/demand-response/events")
    parser.add_argument("--mixed-phase-cars", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="single-phase cars take three-phase bays too, loading one phase "
                             "(default; --no-mixed-phase-cars: every car uses all its bay's "
                             "phases)")
    parser.add_argument("--mixed-ocpp", action=argparse.BooleanOptionalAction, default=True,
                        help="every other station under each circuit speaks OCPP 2.0.1 (half of "
                             "those with ISO 15118 cars), the rest 1.6 (default; "
                             "--no-mixed-ocpp: all 1.6)")
    parser.add_argument("--explain", type=int, default=0, metavar="N",
                        help="for the first N limit violations, print every bay under the "
                             "overloaded circuit with its draw and installed profiles")
    parser.add_argument("--out", type=Path, default=Path("demo-output"),
                        help="directory for the plot (created if missing)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="directory for the SQLite file (default: a temporary directory)")
    parser.add_argument("--progress-every-min", type=float, default=60.0,
                        help="print a progress line every this many simulated minutes")
