"""Station passwords stored as salted hashes: the site file takes them, the endpoint checks them.

`smartcharge hash-secret` prints the form; a station still sends its plaintext AuthorizationKey
in HTTP Basic auth (security profile 1/2), and the endpoint verifies it against the hash.
"""

from __future__ import annotations

import aiohttp
import pytest

from smartcharge.appkeys import REGISTRY
from smartcharge.config import ConfigError, parse_site
from smartcharge.credentials import hash_secret, is_hashed
from smartcharge.model import Connector, Station
from tests.conftest import PASSWORD, make_site

FAST = {"n": 2 ** 10, "r": 8, "p": 1}   # same format as the default, cheaper for the tests
HASHED = hash_secret(PASSWORD, **FAST)

HASHED_SITE = make_site(stations=(
    Station("CP1", "grid", (Connector(1),), password=HASHED, max_power_w=22_000.0),))


@pytest.mark.parametrize("site", [HASHED_SITE])
async def test_station_connects_with_the_password_behind_a_hash(harness):
    station = await harness.station("CP1", password=PASSWORD)
    assert harness.app[REGISTRY].get("CP1").boot_accepted
    assert station.ws.protocol == "ocpp1.6"


@pytest.mark.parametrize("site", [HASHED_SITE])
# ids: the hash has a random salt, and pytest-xdist needs the same test ids in every worker
@pytest.mark.parametrize("given", ["station-password-02", HASHED, ""],
                         ids=["wrong", "the-hash", "empty"])
async def test_wrong_password_or_the_hash_itself_is_refused(harness, given):
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await harness.open_ws("CP1", password=given)
    assert refused.value.status == 401
    assert harness.app[REGISTRY].online_ids() == set()


SITE_FILE = """
[[stations]]
id = "CP1"
password = "{password}"
[[stations.connectors]]
id = 1
"""


def test_site_file_takes_a_hashed_password():
    site = parse_site(SITE_FILE.format(password=HASHED))
    assert is_hashed(site.station("CP1").password)


def test_a_malformed_hash_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError) as error:
        parse_site(SITE_FILE.format(password="scrypt$1024$8$1$nope"))
    assert error.value.path == "stations[0].password"


def test_plaintext_length_rule_still_applies():
    with pytest.raises(ConfigError, match="bytes"):
        parse_site(SITE_FILE.format(password="short"))
