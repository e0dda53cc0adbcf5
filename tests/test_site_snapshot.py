"""The dashboard's view model lives outside the controller (issue 8): `site/snapshot.py` is a
pure function of the controller's state; `controller.snapshot()` records the history, then
returns it."""

from datetime import UTC, datetime

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.site.controller import ControllerSettings, SiteController
from smartcharge.site.snapshot import view_model

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_the_view_model_is_a_pure_function_of_controller_state():
    site = Site(name="snap", circuits=(Circuit("grid", None, limit_w=40_000.0),),
                stations=(Station("CP1", "grid", (Connector(1), Connector(2))),),
                id_tags=frozenset(), session_defaults=SessionDefaults(energy_wh=10_000,
                                                                       dwell_s=3600))
    controller = SiteController(site, AcceleratedClock(T0, speed=1.0), ControllerSettings())
    shown = controller.snapshot()
    assert len(controller.history) == 1   # the controller recorded the moment
    limit_w, source = controller.effective_limit_now()
    now = controller.clock.now()
    reading = controller.site_reading()
    again = view_model(controller, now, limit_w, source, reading, limit_w)
    assert view_model(controller, now, limit_w, source, reading, limit_w) == again
    assert len(controller.history) == 1   # the view model changed nothing
    moments = ("time", "site_load_at")
    assert {k: v for k, v in again.items() if k not in moments} == {
        k: v for k, v in shown.items() if k not in moments}
    assert [(c["station_id"], c["connector_id"], c["controllable"])
            for c in again["connectors"]] == [("CP1", 1, True), ("CP1", 2, True)]
    assert again["effective_limit_w"] == 40_000.0 and again["site_load_w"] == 0.0
