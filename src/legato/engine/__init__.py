"""The engine: runs one flow run durably.

Every task call in a flow run gets a call key. A call whose key is already recorded as
COMPLETED or CACHED returns the stored result without running (that is how a resumed flow
skips finished work); a new key becomes a task run that is recorded, waits for the futures it
was given, runs (inline, in a thread, or in a child process), retries under its policy, and
commits its outcome before the result is handed to anyone.
"""

from legato.engine.core import ENGINE_LOGGER, FlowRunEngine
from legato.engine.flow_runs import run_flow

__all__ = ["ENGINE_LOGGER", "FlowRunEngine", "run_flow"]
