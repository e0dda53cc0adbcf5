"""Fail-safe: when the VTN goes away, the events already received stay in force (they are the
site's stored DR events), nothing else changes, and the dashboard shows the VEN unreachable
with its last successful poll - also after smartcharge itself restarts."""

from datetime import timedelta

from smartcharge.openadr.setup import VENS
from tests.openadr_vtn2b import vtn_2b
from tests.site_e2e import control_server, wait_until
from tests.test_openadr_2b import DISPATCH, SETTINGS, _clock, _site


async def test_vtn_outage_and_restart_keep_the_accepted_event(tmp_path):
    clock = _clock()
    db = tmp_path / "sc.sqlite"
    async with vtn_2b() as vtn:
        site = _site(vtn.url)
        async with control_server(site, db, clock, settings=SETTINGS,
                                  dispatch=DISPATCH) as server:
            ven = server.app[VENS]["peak"]
            await vtn.wait_until(lambda: vtn.registrations, what="registration")
            start = clock.now() + timedelta(minutes=30)
            vtn.capacity_event("cap-kept", start, minutes=60, limit_kw=9.0)
            await vtn.wait_until(lambda: vtn.opts.get("cap-kept") == "optIn", what="opt-in")
            before = [e for e in server.controller.limits.events()]
            await vtn.stop()                                   # the VTN is gone
            await wait_until(lambda: ven.status.state == "unreachable", 10, "VEN unreachable")
            snapshot = server.controller.snapshot()
            assert snapshot["vens"][0]["state"] == "unreachable"
            last_poll = snapshot["vens"][0]["last_poll_ok"]
            assert last_poll is not None
            assert server.controller.limits.events() == before     # nothing else changes
            assert server.controller.effective_limit_at(start + timedelta(minutes=1))[0] \
                == 9_000.0
    # smartcharge restarts while the VTN is still away: the event is back from the store
    async with control_server(site, db, clock, settings=SETTINGS,
                              dispatch=DISPATCH) as server:
        ven = server.app[VENS]["peak"]
        event = server.controller.limits.event("openadr:peak/cap-kept")
        assert event is not None and not event.cancelled and event.limit_w == 9_000.0
        assert server.controller.effective_limit_at(start + timedelta(minutes=1))[0] == 9_000.0
        await wait_until(lambda: ven.status.state == "unreachable", 10, "VEN unreachable")
        shown = server.controller.snapshot()["vens"][0]
        assert shown["last_poll_ok"] == last_poll and shown["ven_id"] == "ven-smartcharge-1"


async def test_2b_over_tls_with_client_certificates_and_signed_messages(tmp_path):
    """The production set-up: HTTPS with a client certificate the VTN requires, both sides
    signing their messages and checking the other's fingerprint (certificates made here)."""
    from openleadr.utils import certificate_fingerprint

    from tests.tls_certs import Authority
    ca = Authority(tmp_path)
    vtn_cert, vtn_key = ca.issue("127.0.0.1", "vtn", server=True)
    ven_cert, ven_key = ca.issue("depot", "ven")
    clock = _clock()
    async with vtn_2b(http_cert=str(vtn_cert), http_key=str(vtn_key), http_ca_file=str(ca.path),
                      cert=str(vtn_cert), key=str(vtn_key),
                      ven_fingerprint=certificate_fingerprint(ven_cert.read_bytes())) as vtn:
        site = _site(vtn.url, cert=str(ven_cert), key=str(ven_key), ca_file=str(ca.path),
                     vtn_fingerprint=certificate_fingerprint(vtn_cert.read_bytes()))
        async with control_server(site, tmp_path / "sc.sqlite", clock, settings=SETTINGS,
                                  dispatch=DISPATCH) as server:
            await vtn.wait_until(lambda: vtn.registrations, what="registration over TLS")
            vtn.capacity_event("cap-tls", clock.now() + timedelta(minutes=5), 10, 7.5)
            await vtn.wait_until(lambda: vtn.opts.get("cap-tls") == "optIn", what="opt-in")
            assert server.controller.limits.event("openadr:peak/cap-tls").limit_w == 7_500.0


async def test_2b_answer_with_the_wrong_signature_is_refused(tmp_path):
    from tests.tls_certs import Authority
    ca = Authority(tmp_path)
    vtn_cert, vtn_key = ca.issue("127.0.0.1", "vtn", server=True)
    clock = _clock()
    async with vtn_2b(cert=str(vtn_cert), key=str(vtn_key)) as vtn:
        site = _site(vtn.url, vtn_fingerprint="00:11:22:33:44:55:66:77:88:99")
        async with control_server(site, tmp_path / "sc.sqlite", clock, settings=SETTINGS,
                                  dispatch=DISPATCH) as server:
            ven = server.app[VENS]["peak"]
            await wait_until(lambda: ven.status.failures >= 2, 10, "answers refused")
            assert ven.status.state == "unreachable" and ven.status.registration_id is None


async def test_vtn_back_after_an_outage_the_ven_is_online_and_follows_new_events(tmp_path):
    from tests.sim_fixtures import free_port
    clock = _clock()
    port = free_port()
    async with vtn_2b(port) as vtn:
        site = _site(vtn.url)
        async with control_server(site, tmp_path / "sc.sqlite", clock, settings=SETTINGS,
                                  dispatch=DISPATCH) as server:
            ven = server.app[VENS]["peak"]
            await vtn.wait_until(lambda: vtn.registrations, what="registration")
            await vtn.stop()
            await wait_until(lambda: ven.status.state == "unreachable", 10, "unreachable")
            async with vtn_2b(port) as again:       # the utility's VTN is back
                await wait_until(lambda: ven.status.state == "online", 10, "online again")
                again.capacity_event("after", clock.now() + timedelta(minutes=5), 10, 6.0)
                await again.wait_until(lambda: again.opts.get("after") == "optIn",
                                       what="opt-in after the outage")
                assert server.controller.limits.event("openadr:peak/after").limit_w == 6_000.0
