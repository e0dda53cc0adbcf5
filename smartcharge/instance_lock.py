"""One `smartcharge serve` per database: an exclusive lock on `<database>.lock`, held for the
process's life.

Why: two servers on one SQLite file each keep their own site in memory - a DR event or a cap
one of them acknowledged (stored) is never in force on the stations connected to the other,
and both send plans. SQLite serialises their writes but not their views. The lock is the
kernel's (`flock`): a SIGKILLed server leaves no stale lock, its restart starts at once. Where
the lock file cannot be made (no `fcntl`, a directory we may not write, `:memory:`), nothing is
held - it never stops a server the store itself would let run.
"""

from __future__ import annotations

import logging
import os
from typing import IO

try:
    import fcntl
except ImportError:     # not POSIX: no lock
    fcntl = None

log = logging.getLogger(__name__)


class DatabaseInUse(RuntimeError):
    """Another process holds the database's lock."""


def hold_database(database: str) -> IO | None:
    """Take the database's lock; the open lock file (keep it for the process's life), or None
    when no lock could be taken. Raises DatabaseInUse when another process holds it."""
    if fcntl is None or not database or database == ":memory:" \
            or database.startswith("file:"):
        return None
    # the file itself, not the name it was given: a second server given it through a symlink
    # (a linked data directory, an old path kept as a link) must find the same lock - SQLite
    # follows the link to one file and one WAL (tests/test_outside_s29_kills.py)
    real = os.path.realpath(database)
    path = real + ".lock"
    try:
        handle = open(path, "a+")
    except OSError as error:
        log.warning("cannot create %s (%s): a second server on this database would not be "
                    "refused", path, error)
        return None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        named = database if real == database else f"{database} (= {real})"
        raise DatabaseInUse(f"database {named} is already served by another smartcharge "
                            f"process (it holds {path}); stop it first, or give this one its "
                            "own database") from None
    except OSError as error:   # a file system without locks
        handle.close()
        log.warning("cannot lock %s (%s): a second server on this database would not be "
                    "refused", path, error)
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")   # who holds it, for a person reading the file
    handle.flush()
    return handle
