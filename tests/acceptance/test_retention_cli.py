"""`legato runs delete`, `legato db prune` and `legato db storage` on the database itself:
runs go with their result files, a dry run deletes nothing, the audit log keeps it."""

from __future__ import annotations

from pathlib import Path

from tests.acceptance.conftest import Legato, as_json

FLOWS = Path(__file__).with_name("rerun_flows.py")


def _results(home: Path) -> list[Path]:
    return [p for p in (home / "results").glob("*") if p.is_file()]


def test_delete_prune_and_storage(legato: Legato, home: Path, tmp_path: Path) -> None:
    env = {"LEDGER": str(tmp_path / "ledger.txt")}
    ids = []
    for _ in range(3):
        ran = legato("run", f"{FLOWS}:week", "-p", "n=2", "--json", env=env)
        assert ran.returncode == 0, ran.stderr
        ids.append(as_json(ran)["id"])
    files = len(_results(home))
    assert files > 0
    held = as_json(legato("db", "storage", "--json"))
    assert held["top_level_runs"] == 3 and held["rows"]["flow_runs"] == 9
    assert held["result_files"] == files and held["database_bytes"] > 0

    refused = legato("runs", "delete", ids[0])  # not a terminal, no --yes
    assert refused.returncode == 2 and "--yes" in refused.stderr
    deleted = legato("runs", "delete", ids[0], "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted 1 runs (2 child runs" in deleted.stderr
    assert len(_results(home)) < files
    gone = legato("runs", "show", ids[0])
    assert gone.returncode == 2 and "no run has id" in gone.stderr

    dry = legato("db", "prune", "--older-than", "0.000001s", "--dry-run")
    assert dry.returncode == 0 and "would delete 2 top-level runs" in dry.stderr
    assert len(as_json(legato("runs", "ls", "--json"))) == 2
    pruned = legato("db", "prune", "--older-than", "0.000001s", "--yes", "--batch", "1", "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert as_json(pruned)["runs"] == 2
    assert as_json(legato("runs", "ls", "--json")) == []
    assert _results(home) == []
    audit = legato("audit", "ls", "--action", "run.delete", "--json")
    assert len(as_json(audit)) == 3  # one delete, two batches of one

    bad = legato("db", "prune", "--older-than", "soon")
    assert bad.returncode == 2 and "--older-than takes a span" in bad.stderr
