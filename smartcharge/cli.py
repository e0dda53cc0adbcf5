"""The `smartcharge` command. Subcommands register themselves in `build_parser()`; `serve` runs
the central system until SIGINT/SIGTERM, then closes every station link and the store cleanly.

Only the standard library and light modules (config, credentials, the demo's flags) are imported
here: the app (aiohttp, ocpp, the optimizer with SciPy) costs ~0.6-1 s, and `--help`, an
argument error or `hash-secret` need none of it. `serve` imports it in `serve_command`; the
demo in `_run_demo` (tests/test_cli_import.py keeps it so)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import logging
import os
import signal
import ssl
import sys

from smartcharge.config import ConfigError, load_site
from smartcharge.credentials import hash_secret
from smartcharge.demo import add_demo_arguments
from smartcharge.instance_lock import DatabaseInUse, hold_database
from smartcharge.serve_checks import (cleartext_warnings, is_loopback, demo_key_refusal,
                                      no_password_warnings, plaintext_password_warnings)
from smartcharge.tls import server_ssl_context

log = logging.getLogger("smartcharge")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartcharge", description="Smart-charging load "
                                     "management for EV charging sites (OCPP 1.6J and 2.0.1).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the OCPP central system and the REST API",
                                description="Run the OCPP 1.6J and 2.0.1 central system and "
                                "the REST API for the site described in --config.")
    serve.add_argument("--config", required=True, help="the site file (TOML)")
    serve.add_argument("--host", help="listen address (default: server.host in the site file)")
    serve.add_argument("--port", type=int, help="listen port; 0 picks a free one "
                       "(default: server.port in the site file)")
    serve.add_argument("--db", help="SQLite file (default: server.database in the site file)")
    serve.add_argument("--tls-cert", help="PEM certificate: serve wss:// (security profile 2)")
    serve.add_argument("--tls-key", help="PEM private key for --tls-cert")
    serve.add_argument("--insecure-open-api", action="store_true",
                       help="serve the REST API and the dashboard WITHOUT any token check "
                       "(every request acts as admin); for a lab on a trusted loopback only. "
                       "Without it the API answers 401 to everyone until tokens are set")
    serve.add_argument("--tls-client-ca", help="PEM CA certificate(s): stations must present a "
                       "client certificate it signed, whose subject CN is their identity "
                       "(security profile 3; needs --tls-cert)")
    serve.add_argument("--log-level", default="INFO",
                       choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    serve.set_defaults(handler=serve_command)
    demo = commands.add_parser("demo", help="run a whole simulated site through a day, with "
                               "the live dashboard", description="Start the server on the "
                               "embedded demo site, connect simulated stations over real "
                               "WebSockets and run a day of cars and a demand-response event "
                               "in accelerated time; print a summary and write a plot.")
    add_demo_arguments(demo)
    demo.set_defaults(handler=lambda args, _parser: _run_demo(args))
    hasher = commands.add_parser("hash-secret", help="print the salted hash of a station "
                                 "password or API token, for the site file",
                                 description="Read a secret (a station password or an API "
                                 "token) and print its salted scrypt hash, which the site file "
                                 "accepts wherever it takes the plaintext. The secret is read "
                                 "from standard input (one line) or asked for at a terminal, so "
                                 "it stays out of the shell history.")
    hasher.set_defaults(handler=hash_secret_command)
    return parser


def _run_demo(args) -> int:
    from smartcharge.demo import run_demo   # only when a demo runs (see demo/__init__.py)
    return run_demo(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.handler(args, parser)


def hash_secret_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if sys.stdin.isatty():
        secret = getpass.getpass("secret: ")
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        print("smartcharge: hash-secret: the secret is empty", file=sys.stderr)
        return 2
    print(hash_secret(secret))
    return 0


def serve_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from smartcharge.log_lines import configure   # one line a record: station text escaped
    configure(args.log_level, sys.stderr)
    if args.log_level != "DEBUG":
        logging.getLogger("ocpp").setLevel(logging.WARNING)   # it logs every frame at INFO
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key (client certificates are "
                     "a TLS feature)")
    try:
        site = load_site(args.config)
    except ConfigError as error:
        print(f"smartcharge: {args.config}: {error}", file=sys.stderr)
        return 2
    settings = dataclasses.replace(
        site.server, host=args.host or site.server.host,
        port=site.server.port if args.port is None else args.port,
        database=args.db or site.server.database, tls_client_ca=args.tls_client_ca)
    site = dataclasses.replace(site, server=settings)
    refusal = demo_key_refusal(site, settings.host)
    if refusal:
        print(f"smartcharge: {args.config}: {refusal}", file=sys.stderr)
        return 2
    for warning in (plaintext_password_warnings(site)
                    + no_password_warnings(site, settings.host, bool(args.tls_client_ca))
                    + cleartext_warnings(site, settings.host, tls=bool(args.tls_cert))):
        log.warning("%s", warning)
    ssl_context = None
    if args.tls_cert:
        try:
            ssl_context = server_ssl_context(args.tls_cert, args.tls_key, args.tls_client_ca)
        except (OSError, ssl.SSLError) as error:
            print(f"smartcharge: cannot load TLS certificate/key/CA: {error}", file=sys.stderr)
            return 2
    try:
        # held until the process ends (a SIGKILL too: the kernel lets it go)
        lock = hold_database(settings.database)   # noqa: F841
    except DatabaseInUse as error:
        print(f"smartcharge: {error}", file=sys.stderr)
        return 2
    from smartcharge.gc_serving import tune_gc_for_serving   # aiohttp: see the docstring
    import smartcharge.app  # noqa: F401  the app's modules before the freeze keeps them out
    from smartcharge.ocpp import fast_schema
    # before listening: compiled at its first message, a schema held the loop up to ~25 ms
    # (s35-stall); before the freeze, as everything kept for the process's life. The test
    # suite's ~90 short-lived `serve` processes skip it (~0.4-0.7 s of CPU each, for messages
    # most never receive): SMARTCHARGE_SCHEMAS_AT_FIRST_USE=1 compiles each at its first use.
    if os.environ.get("SMARTCHARGE_SCHEMAS_AT_FIRST_USE") != "1":
        fast_schema.compile_all()
    tune_gc_for_serving()
    from smartcharge.serving_loop import serving_loop_factory
    from smartcharge.store import StoreUnusable
    try:
        # a loop that takes a bounded number of ready sockets and accepts per turn (a boot
        # storm held it 40-62 ms a turn: serving_loop.py)
        with asyncio.Runner(loop_factory=serving_loop_factory()) as runner:
            runner.run(_serve(site, ssl_context, open_api=args.insecure_open_api))
    except StoreUnusable as error:   # before listening: nothing was acknowledged
        print(f"smartcharge: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"smartcharge: cannot listen on {settings.host}:{settings.port}: {error}",
              file=sys.stderr)
        return 1
    return 0


async def _serve(site, ssl_context: ssl.SSLContext | None, *, open_api: bool = False) -> None:
    if open_api and not is_loopback(site.server.host):
        log.warning("--insecure-open-api on %s, which is not a loopback address: anyone who "
                    "can reach it controls the stations", site.server.host)
    from aiohttp import web   # the app's imports: only for `serve` (see the docstring)

    from smartcharge.app import create_app
    from smartcharge.gc_serving import freeze_after_storms
    app = create_app(site, insecure_open_api=open_api)
    freeze_after_storms(app)   # a serving process only: see gc_serving.py
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        listener = web.TCPSite(runner, site.server.host, site.server.port,
                               ssl_context=ssl_context)
        await listener.start()
        scheme = "https" if ssl_context else "http"
        for address in runner.addresses:
            host, port = address[0], address[1]
            # one line on stdout that scripts (and the crash test) can wait for
            print(f"smartcharge: listening on {scheme}://{host}:{port} "
                  f"(OCPP at {'wss' if ssl_context else 'ws'}://{host}:{port}/ocpp/<id>)",
                  flush=True)
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
