"""Virtualenvs for the benchmark peers.

Each peer runs in its own interpreter so that peers' dependencies (Prefect pins a lot)
never leak into the project's `.venv`. Venvs live in `bench/.venvs/` (gitignored) and are
reused: a marker file records what was installed, so a second run does nothing.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENVS = BENCH / ".venvs"

PREFECT = "prefect==3.9.1"
DASK = "dask[distributed]==2026.8.0"
DBOS = "dbos==3.4.0"
CELERY = "celery[redis]==5.7.0"

# peer name -> venv folder; legato uses the project's own venv, made by `make install`.
VENV_OF: dict[str, Path] = {
    "legato": ROOT / ".venv",
    "prefect": VENVS / "prefect",
    "dbos": VENVS / "dbos",
    "threads": VENVS / "dask",  # plain stdlib; any interpreter would do
    "dask": VENVS / "dask",
    "dask-distributed": VENVS / "dask",  # a LocalCluster of worker processes
    "celery": VENVS / "celery",  # bench/fanout.py only: a broker-and-worker queue
}
# bench/run.py's peers: dbos takes part in the cold start only (bench/cold_start.py), celery
# in the fan-out only (bench/fanout.py).
PEERS = tuple(name for name in VENV_OF if name not in ("dbos", "celery"))


def python_of(peer: str) -> Path:
    return VENV_OF[peer] / "bin" / "python"


def _say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _pip(venv: Path, *args: str) -> None:
    """Quiet pip; show pip's own output only when it fails."""
    cmd = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def _prefect_requirements_unpinned_certifi(venv: Path) -> list[str]:
    """Prefect's declared (non-extra) requirements, with certifi's pin dropped.

    Read from the wheel's METADATA so the list follows the pinned release exactly.
    """
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "-d",
            tmp,
            PREFECT,
        ]
        subprocess.run(cmd, check=True, capture_output=True)
        wheel = next(Path(tmp).glob("prefect-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            lines = zf.read(meta).decode().splitlines()
    reqs = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Requires-Dist:")]
    reqs = [r for r in reqs if "extra ==" not in r]
    return ["certifi" if re.match(r"certifi\b", r) else r for r in reqs]


def _install_prefect(venv: Path) -> None:
    try:
        _pip(venv, PREFECT)
    except RuntimeError as err:
        # Prefect 3.9.1 pins a certifi newer than some indexes carry: install its
        # requirements with certifi unpinned, then Prefect itself without resolving deps.
        _say(f"plain install failed ({str(err).splitlines()[-1][:120]}); using certifi workaround")
        _pip(venv, *_prefect_requirements_unpinned_certifi(venv))
        _pip(venv, "--no-deps", PREFECT)


INSTALLERS = {
    "prefect": (PREFECT, _install_prefect),
    "dask": (DASK, lambda venv: _pip(venv, DASK)),
    "dbos": (DBOS, lambda venv: _pip(venv, DBOS)),
    "celery": (CELERY, lambda venv: _pip(venv, CELERY)),
}


def ensure_venv(peer: str) -> Path:
    """Create (once) the venv a peer runs in; return its python."""
    venv = VENV_OF[peer]
    if peer == "legato":
        if not python_of(peer).exists():
            raise RuntimeError(f"{venv} is missing: run `make install` first")
        return python_of(peer)
    key = "dask" if peer in ("threads", "dask-distributed") else peer
    spec, install = INSTALLERS[key]
    marker = venv / ".bench-installed"
    if marker.exists() and marker.read_text().strip() == spec:
        return python_of(peer)
    start = time.monotonic()
    _say(f"creating {venv.relative_to(ROOT)} for {spec} ...")
    # Any Python 3.11+ can make the venv; the one running us is at hand.
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    install(venv)
    marker.write_text(spec + "\n")
    _say(f"installed {spec} in {time.monotonic() - start:.0f} s")
    return python_of(peer)


if __name__ == "__main__":
    for name in sys.argv[1:] or ["prefect", "dask", "celery"]:
        print(ensure_venv(name))
