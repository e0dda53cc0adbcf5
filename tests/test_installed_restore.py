"""What a station said it applies after a restart (`site/installed_restore.py`), kept for
the stations' clocks and for an answer shorter than asked: pure functions, exact values."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from smartcharge.model import Site
from smartcharge.ocpp.port import FOREVER, Installed
from smartcharge.site.installed_restore import (Restored, RestoredLayers, bounded, fitted,
                                                widened)
from smartcharge.site.state import Session, SiteState
from smartcharge.site.topology import ConnectorRef

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REF = ConnectorRef("CP1", 1)


def _installed(starts_s, limits, *, unit="A", expires=FOREVER) -> Installed:
    return Installed(transaction_id=0, start=T0, expires=expires, unit=unit, phases=3,
                     starts_s=list(starts_s), limits=list(limits))


def test_a_raise_is_kept_earlier_and_a_drop_later_by_the_margin():
    out = widened(_installed([0, 100, 200, 203], [10, 0, 5, 20]), 5)
    assert out.start == T0 - timedelta(seconds=5)
    # in the old offsets: 10 until 105, 0 until 195, 5 until 198, then 20
    assert (out.starts_s, out.limits) == ([0, 110, 200, 203], [10, 0, 5, 20])


def test_a_dip_shorter_than_twice_the_margin_is_not_counted():
    out = widened(_installed([0, 100, 106], [16, 0, 16]), 5)
    assert out.limits == [16]


def test_an_answer_shorter_than_asked_is_followed_by_the_maximum():
    answer = _installed([0, 60], [0, 10], expires=T0 + timedelta(seconds=300))
    out = fitted(answer, T0, 1800, 32.0)
    assert out.expires == T0 + timedelta(seconds=1800)
    assert (out.starts_s, out.limits) == ([0, 60, 300], [0, 10, 32.0])


def test_an_answer_without_an_end_ends_where_asked():
    out = fitted(_installed([0], [6.0]), T0, 1800, 32.0)
    assert out.expires == T0 + timedelta(seconds=1800) and out.limits == [6.0]


def test_an_answer_in_an_unknown_unit_says_nothing():
    assert fitted(_installed([0], [6.0], unit="kW"), T0, 1800, 32.0) is None


def test_what_is_under_it_now_bounds_the_answer_both_ways():
    # the station said 32 A until the old plan's end, then 6.5 (its default); since then this
    # process sent an idle share of 6.5 A under it: with an old TxProfile it still applies 32,
    # without one 6.5 - a raise is judged against the lower, the draw bounded by the higher
    later = T0 + timedelta(seconds=600)
    told = [(T0, 32.0), (later, 6.5)]
    below = [(T0, 6.5)]
    assert bounded(told, below, upper=False) == [(T0, 6.5)]
    assert bounded(told, below, upper=True) == [(T0, 32.0), (later, 6.5)]
    # a car the earlier process paused: 0 under a default of 6.5
    assert bounded([(T0, 0.0), (later, 6.5)], below, upper=False) == [(T0, 0.0), (later, 6.5)]


def test_an_answer_holds_for_the_transaction_asked_about_whatever_its_stamp():
    """A station two minutes ahead of our clock stamps its transactions two minutes late: by
    the stamp, the transaction it was asked about began after the question and the answer
    was not taken for it - the connector counted at its maximum again (20.7 kW under 13.8 in
    the first round after a restart, a site whose edge_margin_s allowed the skew). By id, it
    holds for that transaction and no other."""
    asked_at = T0 + timedelta(seconds=30)
    layers = RestoredLayers(SiteState(Site(name="s", circuits=(), stations=())))
    answer = _installed([0], [20.0], expires=T0 + timedelta(hours=1))
    layers.by_ref[REF] = Restored(asked_at, answer, transaction_id=7)
    stamped_ahead = Session(transaction_id=7, ref=REF, id_tag="T",
                            started_at=asked_at + timedelta(seconds=90), meter_start_wh=0.0,
                            requested_wh=1.0, departure=T0 + timedelta(hours=2))
    told = layers.for_session(REF, stamped_ahead)
    assert told is not None and told.limits == [20.0] and told.transaction_id == 7
    another = replace(stamped_ahead, transaction_id=8, started_at=T0 - timedelta(hours=1))
    assert layers.for_session(REF, another) is None
