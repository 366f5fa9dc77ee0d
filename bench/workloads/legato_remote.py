"""Legato's fan-out on a remote pool: `remote_flows.fan_out` (trivial tasks on pool `bench`),
run in this process, its task runs by workers that bench/fanout.py started.

Where they are is the environment's: LEGATO_DATABASE_URL and LEGATO_REMOTE_POOLS=true
(PostgreSQL), or LEGATO_API_URL and LEGATO_API_TOKEN (server mode). One process and one
runtime serve every rep, as a long-running flow process would.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # like the other peers
sys.path.insert(0, str(HERE.parent))

from workloads import _common as C  # noqa: E402

try:
    import legato  # noqa: F401
except ImportError:  # not installed in this interpreter: use the checkout's src/
    sys.path.insert(0, str(HERE.parents[1] / "src"))

from legato.loader import load_flow  # noqa: E402

if __name__ == "__main__":
    fan_out = load_flow(f"{HERE.parent / 'flows' / 'remote_flows.py'}:fan_out")
    C.main("legato-remote", {"concurrent": fan_out})
