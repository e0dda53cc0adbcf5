"""`smartcharge demo`: a whole site through a day, in accelerated time, over real sockets.

It starts the real server (central system, site controller, dashboard) on 127.0.0.1, connects
the simulated stations of the demo site over real WebSockets, lets seeded cars arrive and leave,
has the utility send an evening demand-response event from its OpenADR 2.0b VTN (or through the
REST API with `--dr-via rest`), and measures the
site's real draw against every limit the whole time. At the end: a summary and a PNG plot.

The parts: `arguments.py` (flags), `scenario.py` (the seeded day: cars, the utility's event),
`run.py` (server, fleet, the day's script), `actors.py` (drivers and the utility),
`utility_vtn.py` (the utility's VTN),
`measure.py` (draws against every limit), `report.py` (the limit accounting), `summary.py` and
`plot.py` (the end), `__main__.py` (`python -m smartcharge.demo`).
"""

from smartcharge.demo.arguments import add_demo_arguments, default_site_path

__all__ = ["Demo", "add_demo_arguments", "default_site_path", "run_demo"]


def __getattr__(name: str):
    # the run (simulator, VTN, plotting) is imported when a demo runs, not by every
    # `smartcharge serve` whose command line knows the demo's flags
    if name in ("Demo", "run_demo"):
        from smartcharge.demo import run
        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
