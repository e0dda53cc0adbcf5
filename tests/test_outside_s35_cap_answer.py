"""Session 35, an outside judge of the cap answer's truth (docs/promises.md, promise 1: a
limit's 2xx says which stations hold profiles under it). Real `smartcharge serve` processes,
bare `ocpp` 1.6 stations keeping what they take (tests/test_outside_s32_kills.py), a real
SQLite file. Each test failed before its fix."""

from __future__ import annotations

import aiohttp

from tests.test_outside_s32_kills import (
    HUNG_CALL_TIMEOUT_S, MAX_W, Bare16Fleet, _server, killed_for_good_stays_under, until)


async def test_a_cap_answer_is_not_complete_beside_an_unanswered_lowered_default(tmp_path):
    """CP1 and CP2 hold 22 kW defaults (a 44 kW grid); CP2 stops answering (and taking) its
    TxDefaultProfile requests. An operator caps the site at 30 kW. With dispatch's call
    timeout short enough for CP2's request and its retry to time out inside the answer's
    bound, the answer read `complete: true, stations_acknowledged: 2` with CP1 on 15 kW
    beside CP2's unanswered 22 kW: 37 kW of profiles under a 30 kW cap, and an operator told
    the site held it. CP2 did not take the cap: it is not acknowledged, and CP1 is counted
    acknowledged only holding what CP2 leaves of the cap."""
    server = _server(tmp_path, 2, HUNG_CALL_TIMEOUT_S)
    cap_w = 30_000
    try:
        async with aiohttp.ClientSession() as http:
            fleet = Bare16Fleet(http, server, 2)
            cp1, cp2 = await fleet.start_at_max_defaults()
            cp2.hang_defaults = True
            status, body = await server.api("PUT", "/api/site/cap", {"limit_w": cap_w})
            assert status == 200, body
            # what CP1 held when the answer was made (a station takes a profile before it
            # answers: whatever it acknowledged is in its store by now)
            cp1_w = cp1.idle_w(2)
            applied = body["applied"]
            assert cp2.hung and cp2.idle_w(2) == MAX_W
            assert applied["complete"] is False, applied
            assert "CP2" in applied["stations_not_acknowledged"] + \
                applied["stations_pending"], applied
            if "CP1" not in applied["stations_pending"] + applied["stations_not_acknowledged"]:
                # counted as holding profiles under the cap: beside what CP2 may still hold
                assert cp1_w + MAX_W <= cap_w + 1, (cp1_w, applied)
            assert applied["stations_acknowledged"] <= 1, applied
            await until(lambda: cp1.idle_w(2) + MAX_W <= cap_w + 1, 30,
                        "CP1's default lowered to what CP2 leaves of the cap")
            killed_for_good_stays_under(server, (cp1, cp2), cap_w)
            fleet.close()
    finally:
        server.stop()
