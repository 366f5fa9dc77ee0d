"""Replay: matching the calls a re-run flow makes to the calls its run recorded.

A resumed (or retried) flow function runs again from the top. Each call it makes is matched to
a recorded call of the same task with the same input fingerprint, whatever order the calls
come in (a set, a dict, ``as_completed``, a directory listing); identical calls are told
apart by their order among themselves. An explicit ``key=`` names one call: the record at
that key is reused only if its inputs are the same. A call whose inputs match no record runs
again; it is never served a result computed from other inputs. In strict mode it raises
``ReplayMismatch`` instead, naming the argument that differs from the record at its key.

Calls that cannot be fingerprinted (an argument no serializer can read) fall back to their
call key alone, as do records made before fingerprints existed (those are run again when
the call now has a fingerprint: nothing says their inputs were the same).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from legato.errors import ReplayMismatch
from legato.fingerprints import differing
from legato.models import TaskRun
from legato.rerun import original_key


@dataclass(slots=True)
class Call:
    """One call as the running flow makes it."""

    name: str  # task or flow name
    key: str  # its call key in this run of the flow: explicit, or by position
    explicit: bool  # the user named it (key=...), so the key is its identity
    fingerprint: str | None  # None: unfingerprintable, matched by key alone
    hashes: dict[str, str] | None


@dataclass(slots=True)
class Match:
    record: TaskRun | None  # the recorded call to reuse (or await), if any
    key: str  # the key to record a new call under
    supersede: TaskRun | None = None  # a record at this explicit key whose inputs changed
    renamed: str | None = None  # the key that record moves to
    child_flow_run_id: str | None = None  # a rerun child flow run this call carries on


class Replay:
    """The recorded calls of one flow run, claimed one by one as the re-run makes them.
    Not thread-safe: the engine calls it under its lock."""

    def __init__(self, run_id: str, records: Iterable[TaskRun], *, strict: bool) -> None:
        self.run_id = run_id
        self.strict = strict
        self._by_key: dict[str, TaskRun] = {}
        self._by_fingerprint: dict[tuple[str, str], list[TaskRun]] = {}
        self._claimed: set[str] = set()
        self.taken: set[str] = set()  # keys in use: recorded, or issued by this run
        # Calls of child flows superseded by a forced rerun: the new call carries the same
        # child run on (reopened in place), found by the call's own key.
        self._rerun_children: dict[tuple[str, str], str] = {}
        # (task, key) of calls a forced rerun chose: the call at that key runs again, and is
        # never matched to another record by its inputs (that one was not chosen).
        self._rerun_keys: set[tuple[str, str]] = set()
        for rec in sorted(records, key=lambda r: (r.created_at, r.id)):
            self.taken.add(rec.key)
            if rec.rerun_by is not None:
                self._rerun_keys.add((rec.task, original_key(rec)))
                if rec.child_flow_run_id:
                    self._rerun_children[(rec.task, original_key(rec))] = rec.child_flow_run_id
            if rec.superseded_at is not None:
                continue  # its inputs changed on an earlier resume: never served again
            self._by_key[rec.key] = rec
            if rec.fingerprint is not None:
                self._by_fingerprint.setdefault((rec.task, rec.fingerprint), []).append(rec)

    def __bool__(self) -> bool:
        return bool(self.taken)

    def match(self, call: Call) -> Match:
        found = self._match(call)
        if found.record is None and self._rerun_children:
            found.child_flow_run_id = self._rerun_children.pop((call.name, found.key), None)
        return found

    def _match(self, call: Call) -> Match:
        if not self._by_key and not self.taken:
            return Match(None, call.key)  # a first run: nothing to replay, keys are its own
        rec = self._by_key.get(call.key)
        if rec is not None and rec.id in self._claimed:
            rec = None
        if rec is None and (call.name, call.key) in self._rerun_keys:
            self._rerun_keys.discard((call.name, call.key))
            return Match(None, self.fresh(call.key))  # chosen for a rerun: it runs again
        if rec is not None and rec.task != call.name:
            raise ReplayMismatch(
                f"flow run {self.run_id} recorded task {rec.task!r} at call key "
                f"{call.key!r}, but this time the flow called {call.name!r} there. Flows must "
                "call tasks in a deterministic order; pass key=... to calls whose order "
                "depends on data."
            )
        if call.fingerprint is None:
            # Matched by key alone, and only to a record that had no fingerprint either.
            if rec is not None and rec.fingerprint is None:
                return self._claim(rec)
            return Match(None, self.fresh(call.key))
        if rec is not None and rec.fingerprint == call.fingerprint:
            return self._claim(rec)
        if call.explicit:
            if rec is None:
                return Match(None, self.fresh(call.key))
            self._refuse_in_strict(call, rec)
            # The user named this call: it replaces the record, which moves aside.
            self._claimed.add(rec.id)
            renamed = self.fresh(f"{call.key}@{rec.id[:8]}")
            self.taken.add(call.key)
            return Match(None, call.key, supersede=rec, renamed=renamed)
        for candidate in self._by_fingerprint.get((call.name, call.fingerprint), ()):
            if candidate.id not in self._claimed:
                return self._claim(candidate)
        if rec is not None:
            self._refuse_in_strict(call, rec)
        return Match(None, self.fresh(call.key))

    def unclaimed(self) -> list[TaskRun]:
        """Records no call of this run of the flow matched (superseded once it completes)."""
        return [r for r in self._by_key.values() if r.id not in self._claimed]

    def claim_key(self, key: str) -> None:
        self.taken.add(key)

    def _claim(self, rec: TaskRun) -> Match:
        self._claimed.add(rec.id)
        return Match(rec, rec.key)

    def fresh(self, key: str) -> str:
        """``key`` if no record or call of this run holds it, else the next free one."""
        fresh = next_free(key, self.taken)
        self.taken.add(fresh)
        return fresh

    def _refuse_in_strict(self, call: Call, rec: TaskRun) -> None:
        if not self.strict:
            return
        names = differing(rec.input_hashes, call.hashes or {})
        what = ", ".join(repr(n) for n in names) if names else "its inputs"
        raise ReplayMismatch(
            f"flow run {self.run_id}: call {call.key!r} of {call.name!r} was recorded with "
            f"other inputs: argument {what} differs from the record, whose result is not "
            "reused, because the flow replays strictly (replay='strict'); resume it with the "
            "inputs it was recorded with."
        )


def next_free(key: str, taken: set[str]) -> str:
    """``key`` if not in ``taken``, else the next free one: ``name:N`` counts on, other keys
    get ``~N``."""
    if key not in taken:
        return key
    base, sep, number = key.rpartition(":")
    if sep and number.isdigit():
        n = int(number) + 1
        while f"{base}:{n}" in taken:
            n += 1
        return f"{base}:{n}"
    n = 1
    while f"{key}~{n}" in taken:
        n += 1
    return f"{key}~{n}"
