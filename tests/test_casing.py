"""`snake_case_keys` (ocpp/casing.py) converts keys exactly as the library's
`camel_to_snake_case`, on every payload shape a station sends and on our answers' shapes."""

from __future__ import annotations

import pytest
from ocpp.charge_point import camel_to_snake_case
from ocpp.messages import MessageType, get_validator

from smartcharge.ocpp import casing
from tests.ocpp_payloads import STATION_ACTIONS, instance


@pytest.mark.parametrize("version", sorted(STATION_ACTIONS))
def test_keys_convert_as_the_library_converts_them(version):
    for action in STATION_ACTIONS[version]:
        for message_type in (MessageType.Call, MessageType.CallResult):
            schema = get_validator(message_type, action, version).schema
            for full in (False, True):
                payload = instance(schema, full=full)
                assert casing.snake_case_keys(payload) == camel_to_snake_case(payload)
                # the second time from the memo
                assert casing.snake_case_keys(payload) == camel_to_snake_case(payload)


def test_odd_keys_convert_as_the_library_converts_them():
    payload = {"ocppCSMSURL": 1, "V2XChargingCtrlr": [{"evseID": {"SoCLimit": None}}],
               "customData": {"vendorId": "x", "someVendorKEYName": [1, {"aB": 2}]},
               "": 3, "already_snake": 4}
    assert casing.snake_case_keys(payload) == camel_to_snake_case(payload)


def test_the_memo_is_bounded(monkeypatch):
    monkeypatch.setattr(casing, "_snake", {})
    monkeypatch.setattr(casing, "KEYS_KEPT", 3)
    payload = {f"vendorKey{index}": index for index in range(10)}
    assert casing.snake_case_keys(payload) == camel_to_snake_case(payload)
    assert len(casing._snake) == 3


def test_long_keys_a_station_invents_are_converted_but_not_remembered():
    # 2.0.1's customData takes any key: a station sending distinct 100 K-character keys must
    # not make the memo hold them (4 096 of them at up to 1 Mi characters each: gigabytes)
    # (five such keys: each costs ~0.1 s to convert here and as much in the library; one
    # remembered would be 100 K characters over the bound)
    before = sum(len(key) for key in casing._snake)
    for n in range(5):
        key = f"vendorKey{n}" + "aB" * 50_000
        assert casing.snake_key(key) == next(iter(camel_to_snake_case({key: None})))
    assert sum(len(key) for key in casing._snake) - before < 5 * casing.KEY_CHARS_KEPT


def test_deep_nesting_converts_as_deep_as_the_library_converts():
    # a dict comprehension is a frame of its own on Python 3.11: two frames per level made a
    # 600-level customData a RecursionError (InternalError) where the library answers it
    payload: dict = {"vendorId": "x"}
    for _ in range(600):
        payload = {"customData": payload}
    expected = camel_to_snake_case(payload)
    assert casing.snake_case_keys(payload) == expected
