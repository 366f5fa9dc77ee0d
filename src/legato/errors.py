"""Every public exception Legato raises. Import them from ``legato.errors``.

Each class's docstring is its default message. Messages say what was wrong and what to do.
"""

from __future__ import annotations


class LegatoError(Exception):
    """Legato failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class UsageError(LegatoError):
    """The command or call was used the wrong way."""


class ParameterError(UsageError):
    """A flow parameter is missing or has the wrong type."""


class FlowNotFound(UsageError):
    """No flow by that name could be loaded."""


class RunNotFound(UsageError):
    """No run has that id."""


class ConfigurationError(UsageError):
    """A LEGATO_* setting is invalid."""


class OutboundRefused(UsageError):
    """The server does not send to that URL: only http(s) URLs of public addresses, or of
    those LEGATO_OUTBOUND_ALLOW names, and no redirects."""


class SchemaTooNew(LegatoError):
    """The database was written by a newer Legato; upgrade Legato to use it."""


class SchemaOutOfDate(LegatoError):
    """The database schema is older than this Legato; run `legato db upgrade`."""


class StoreError(LegatoError):
    """The state store could not be read or written."""


class IllegalTransition(StoreError):
    """A state change the transition table does not allow (e.g. COMPLETED -> RUNNING): refused
    where states are written, so nothing records it."""

    index: int | None = None  # which operation of a batch was refused, when known


class StoreUnavailable(StoreError):
    """The state database cannot take writes: its disk is full, it is read-only, or its disk
    fails. Writing again cannot help until that is fixed; then `legato runs resume RUN_ID`
    carries the run on from its last committed change."""


class StoreBusy(StoreError):
    """The state database was busy (locked by another writer) or its connection dropped; the
    same write may succeed if it is tried again."""


class SerializationError(LegatoError):
    """A value could not be serialized for storage."""


class ResultStorageError(LegatoError):
    """The result storage could not be written or read."""


class ResultMissing(ResultStorageError):
    """A stored result's file is missing or does not match its recorded checksum.

    The message names the file and what the result belongs to. A resumed or retried run
    runs the call that made it again.
    """


class ResultRefused(ResultMissing):
    """A stored result's reference points outside the configured result storage
    (LEGATO_RESULT_STORAGE), so it was not read: whoever wrote it could have planted any file.

    A ``ResultMissing``, so a resumed or retried run runs the call that made it again instead
    of trusting the record.
    """


class PickleRefused(SerializationError):
    """A stored result is a pickle and LEGATO_ALLOW_PICKLE=false: it was not loaded, since
    loading a pickle runs code."""


class CallNotLoadable(SerializationError):
    """A task's function or arguments cannot be unpickled in the process that runs it."""


class TaskFailed(LegatoError):
    """A task run failed."""


class FlowFailed(LegatoError):
    """A flow run failed."""


class TaskTimeout(LegatoError):
    """A task run exceeded its timeout and was stopped."""


class FlowTimeout(LegatoError):
    """A flow run exceeded its timeout."""


class ReplayMismatch(LegatoError):
    """On resume, a call does not fit what the run recorded at its call key.

    A different task at an explicit ``key=``, or (with ``replay="strict"``) a call whose
    inputs differ from the record at its key: the message names the argument that differs.
    """


class NoWorkerForPool(LegatoError):
    """No worker or local executor can serve the task's pool and resources."""


class EngineJobFailed(LegatoError):
    """The engine (Slurm, Dask, Kubernetes) reports that the task's job failed without
    returning a result; the message carries the engine's state and the job's stderr."""


class EngineError(LegatoError):
    """The engine behind a pool cannot be reached or refused a job; check the pool's options
    (`legato pools ls`) and that the engine answers from this machine."""


class AskTimeout(LegatoError):
    """Nobody answered the question before its timeout, and it has no default."""


class ProcessCrashed(LegatoError):
    """The task's process died without returning a result."""


class InvalidAnswer(UsageError):
    """The answer does not match the question's schema."""


class Unauthorized(LegatoError):
    """The API token is missing, wrong or lacks the role this action needs."""


class Cancelled(BaseException):
    """The run was cancelled.

    A ``BaseException`` on purpose: a task's ``except Exception`` must not swallow it.
    """


class Paused(BaseException):
    """The flow run is waiting for an answer; its process lets go until it is answered.

    A ``BaseException`` so user code's ``except Exception`` does not swallow the pause.
    """

    def __init__(self, question_id: str) -> None:
        super().__init__(f"waiting for an answer to question {question_id}")
        self.question_id = question_id


__all__ = [
    "AskTimeout",
    "Cancelled",
    "ConfigurationError",
    "EngineError",
    "EngineJobFailed",
    "FlowFailed",
    "FlowNotFound",
    "FlowTimeout",
    "IllegalTransition",
    "InvalidAnswer",
    "LegatoError",
    "NoWorkerForPool",
    "OutboundRefused",
    "ParameterError",
    "Paused",
    "PickleRefused",
    "ProcessCrashed",
    "ReplayMismatch",
    "ResultMissing",
    "ResultRefused",
    "ResultStorageError",
    "RunNotFound",
    "SchemaOutOfDate",
    "SchemaTooNew",
    "SerializationError",
    "StoreBusy",
    "StoreError",
    "StoreUnavailable",
    "TaskFailed",
    "TaskTimeout",
    "Unauthorized",
    "UsageError",
]


def describe(exc: BaseException) -> str:
    """``Type: message`` (or the type alone), as errors are shown in run records."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
