"""A real MongoDB database whose n-th write fails: for tests that inject a
transient error (as a replica-set failover raises) at one step of a use case.

`FaultyDatabase(db)` passes every call through to `db` and counts the writes
(`writes` lists them as "collection.method"); with `fail_at=n` the n-th write
(from 0), or with `fail_on="bookings.insert_many"` the first such write,
raises AutoReconnect, either before it reaches the server (`applied=False`) or
after the server applied it (`applied=True`: the acknowledgement was lost).
Reads are never failed: the write steps are where a promise can break.
"""

from __future__ import annotations

from typing import Any

from pymongo.collection import Collection
from pymongo.errors import AutoReconnect

WRITES = frozenset(
    {
        "insert_one",
        "insert_many",
        "update_one",
        "update_many",
        "replace_one",
        "delete_one",
        "delete_many",
        "bulk_write",
        "find_one_and_update",
        "find_one_and_delete",
    }
)


class InjectedFault(AutoReconnect):
    """The failure a FaultyDatabase raises (a transient error, as core.errors counts them)."""


class FaultyDatabase:
    def __init__(
        self, db, *, fail_at: int | None = None, fail_on: str | None = None, applied: bool = False
    ):
        self._db = db
        self.fail_at = fail_at
        self.fail_on = fail_on
        self.applied = applied
        self.writes: list[str] = []

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._db, name)
        return _FaultyCollection(found, self) if isinstance(found, Collection) else found

    def __getitem__(self, name: str) -> Any:
        return _FaultyCollection(self._db[name], self)

    def _write(self, label: str, call, *args, **kwargs):
        self.writes.append(label)
        step = len(self.writes) - 1
        if step != self.fail_at and not (label == self.fail_on and self.writes.count(label) == 1):
            return call(*args, **kwargs)
        if self.applied:
            call(*args, **kwargs)
        raise InjectedFault(f"injected at write {step} ({label}, applied={self.applied})")


class _FaultyCollection:
    def __init__(self, collection: Collection, faults: FaultyDatabase):
        self._collection = collection
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._collection, name)
        if name not in WRITES:
            return found
        label = f"{self._collection.name}.{name}"
        return lambda *args, **kwargs: self._faults._write(label, found, *args, **kwargs)
