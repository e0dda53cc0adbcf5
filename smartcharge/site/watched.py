"""A dict that tells who watches it which keys changed.

The guard keeps each connector's counted draw between passes and counts again only the
connectors whose inputs changed (guard_counts.py): the live picture's sessions and samples,
what each station accepted, the settle times. Those are mutated from many places (the state,
dispatch, the fail-safe setup, the restore after a restart); a mutation that no hook told
would leave a connector counted at an old value. So the dicts themselves tell: every way a
dict can be changed (item set or deleted, pop, popitem, clear, update, setdefault, |=) calls
every watcher with the key. Reads are the plain dict's (no cost on the hot path).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

Watcher = Callable[[Hashable], None]


class WatchedDict(dict):
    __slots__ = ("_watchers",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._watchers: list[Watcher] = []

    def watch(self, watcher: Watcher) -> None:
        """Call `watcher(key)` after every change of `key` (all keys on `clear`)."""
        if watcher not in self._watchers:
            self._watchers.append(watcher)

    def unwatch(self, watcher: Watcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)

    def touch(self, key: Hashable) -> None:
        """The value of `key` changed in place (a mutable value): tell the watchers."""
        for watcher in self._watchers:
            watcher(key)

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.touch(key)

    def __delitem__(self, key) -> None:
        super().__delitem__(key)
        self.touch(key)

    def pop(self, key, *default) -> Any:
        had = key in self
        value = super().pop(key, *default)
        if had:
            self.touch(key)
        return value

    def popitem(self) -> tuple:
        key, value = super().popitem()
        self.touch(key)
        return key, value

    def setdefault(self, key, default=None) -> Any:
        if key in self:
            return self[key]
        self[key] = default
        return default

    def clear(self) -> None:
        keys = list(self)
        super().clear()
        for key in keys:
            self.touch(key)

    def update(self, *args, **kwargs) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other):
        self.update(other)
        return self

    def __reduce__(self):   # copies and pickles are plain dicts: nobody watches them
        return (dict, (dict(self),))
