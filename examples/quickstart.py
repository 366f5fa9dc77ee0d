"""The five-minute tour as a script: a small recording pipeline with retries, caching, a
report, and one recording that waits for a person's approval.

    python examples/quickstart.py          # or: legato run examples/quickstart.py:process_week
    legato runs ls
    legato asks ls
    legato answer RUN_ID yes
"""

from __future__ import annotations

import random
import statistics
import sys

from legato import artifact, ask, flow, get_logger, task
from legato.errors import Paused


@task(pool="io", retries=3, retry_delay=[0.1, 0.5], retry_jitter=0.2)
def upload(name: str) -> str:
    """Copy a recording to remote storage (here: pretend, and fail now and then)."""
    if random.random() < 0.2:
        raise ConnectionError(f"network hiccup while uploading {name}")
    return f"storage://recordings/{name}"


@task(pool="gpu", cache=True)
def extract(uri: str) -> list[float]:
    """Extract a signal from the recording (deterministic per recording, so cached)."""
    rng = random.Random(uri)
    spread = 0.3 if uri.endswith("005.h5") else 0.1  # one noisy recording in the week
    return [rng.gauss(0.5, spread) for _ in range(200)]


@task(pool="cpu")
def stats(signal: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(signal), "stdev": statistics.pstdev(signal)}


@task
def qc_report(name: str, summary: dict[str, float]) -> bool:
    """Write a QC report; True when the recording looks doubtful."""
    doubtful = summary["stdev"] > 0.2
    artifact.markdown(
        f"# QC for {name}\n\nmean {summary['mean']:.3f}, stdev {summary['stdev']:.3f}: "
        + ("**doubtful**" if doubtful else "fine"),
        title=f"QC {name}",
    )
    return doubtful


@flow
def process_recording(name: str) -> dict[str, object]:
    log = get_logger()
    uri = upload(name)
    signal = extract.submit(uri)
    summary = stats.submit(signal)
    doubtful = qc_report(name, summary.result())
    approved = True
    if doubtful:
        log.warning("%s looks doubtful: asking for approval", name)
        approved = ask(f"QC for {name} is doubtful. Keep it?", schema=bool)
    return {"name": name, "uri": uri, **summary.result(), "approved": approved}


@flow
def process_week(count: int = 8) -> list[dict[str, object]]:
    names = [f"rec-{i:03d}.h5" for i in range(count)]
    return [f.result() for f in process_recording.map(names)]


if __name__ == "__main__":
    random.seed(7)
    try:
        results = process_week()
    except Paused:
        print(
            "\nThe run is PAUSED: a recording needs a person's approval.\n"
            "  legato asks ls                 # what is waiting\n"
            "  legato answer RUN_ID yes       # approve it; the run carries on\n"
            "  legato runs ls / runs show ID  # everything that happened",
            file=sys.stderr,
        )
        sys.exit(3)
    print(f"processed {len(results)} recordings")
