"""What an engine's job runs: ``python -m legato.engines.job PAYLOAD OUT``.

``PAYLOAD`` and ``OUT`` are paths on a shared filesystem (Slurm) or fsspec URLs (Kubernetes:
``s3://...``). The payload is the same cloudpickled call a local child process gets
(``legato._child.run_payload``); the outcome (value, error, logs, artifacts) is written to
``OUT`` only when the call has returned, so a job killed by its engine leaves none. The job
keeps its own interpreter's path and adds the bridge's: in a pod, Python may live elsewhere.
What the task prints goes to the job's stdout and stderr, which the engine keeps and the
bridge ships to the run's log.
"""

from __future__ import annotations

import os
import sys
import tempfile


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m legato.engines.job PAYLOAD OUT", file=sys.stderr)
        return 2
    payload_at, out_at = args
    from legato._child import run_payload

    if _is_url(payload_at):
        import fsspec

        with fsspec.open(payload_at, "rb") as fh:
            payload = fh.read()
    else:
        with open(payload_at, "rb") as fh:
            payload = fh.read()
    if not _is_url(out_at):
        run_payload(payload, out_at, add_path=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="legato-job-") as tmp:
        local = os.path.join(tmp, "outcome.pkl")
        run_payload(payload, local, add_path=True)
        import fsspec

        with open(local, "rb") as src, fsspec.open(out_at, "wb") as dst:
            dst.write(src.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
