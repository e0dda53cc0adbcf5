"""One log record, one line: `serve`'s log shows text stations and clients send (an id tag, a
vendor, a message id, a reason), and a line break in it forged a line of its own - an ERROR
nobody logged, for whoever reads or greps the log. Control characters and Unicode line
separators in a record's message are escaped (`\\n`, `\\u2028`) where it is formatted, once for
every call site; a traceback, added after the message, keeps its lines."""

from __future__ import annotations

import logging
import re

_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    if not _BREAKING.search(text):
        return text
    return _BREAKING.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class OneLineFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)


def configure(level: str, stream) -> None:
    """The root handler `serve` logs through (as `logging.basicConfig`, one line a record)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
