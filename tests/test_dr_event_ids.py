"""A demand-response event's id, as a utility's client chooses it, is a name the API must be
able to answer with and to address afterwards.

- An id with a control character ("a\\nb", "a\\x00b") was committed - the event in force - and
  then the 201's `Location` header could not be written: the client lost its connection with no
  answer at all (and a retry did the same). Such an id is refused with a 422 naming it, and
  nothing is stored.
- An id the URL syntax gives a meaning ("a?b", "a#b", "a b") came back in `Location` as it is:
  the URL named another event (404), so the utility could not read, update or cancel its own
  event through it. `Location` is percent-encoded and leads to the event.
- An id with a "." or ".." segment cannot be addressed at all (every client removes those
  segments): refused.
Real server, real HTTP client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest


NOW = datetime.now(UTC).replace(microsecond=0)
WINDOW = {"start": (NOW + timedelta(hours=1)).isoformat(),
          "end": (NOW + timedelta(hours=2)).isoformat(), "limit_w": 5_000}
EVENTS = "/api/demand-response/events"


async def _listed(server, http) -> list[str]:
    async with http.get(server.make_url(EVENTS)) as response:
        return [event["id"] for event in await response.json()]


@pytest.mark.parametrize("event_id", ["a\nb", "a\x00b", "a\tb", "a\rb", "a\u2028b", "a\x7fb",
                                      "..", "x/..", "./x", "x/./y"])
async def test_an_id_that_cannot_be_answered_or_addressed_is_refused(api, event_id):
    server, http = api
    async with http.post(server.make_url(EVENTS), json={"id": event_id, **WINDOW}) as response:
        answer = await response.json(content_type=None)
        assert response.status == 422, (response.status, answer)
        assert answer["error"] == "invalid_body" and answer["detail"].startswith("id:"), answer
    assert await _listed(server, http) == []


@pytest.mark.parametrize("event_id", ["a?b", "a#b", "a b", "a%b", "a%3Fb", "事件", "évé",
                                      "a/b", "utility/2026/evening"])
async def test_the_location_of_a_new_event_leads_to_it(api, event_id):
    server, http = api
    async with http.post(server.make_url(EVENTS), json={"id": event_id, **WINDOW}) as response:
        assert response.status == 201, await response.text()
        location = response.headers["Location"]
    # as a client follows it: the header's text is the URL, taken as it is
    url = aiohttp.client.URL(str(server.make_url("/")).rstrip("/") + location, encoded=True)
    async with http.get(url) as response:
        assert response.status == 200, (location, await response.text())
        assert (await response.json())["id"] == event_id
    async with http.delete(url) as response:
        assert response.status == 200, (location, await response.text())
        assert (await response.json())["state"] == "cancelled"
