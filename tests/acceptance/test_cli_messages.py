"""What the CLI prints is what happened: user input and errors are never read as Rich
markup, a `-p` value meant as JSON says where it breaks, and `runs show` exits with its
run's code."""

from __future__ import annotations

from pathlib import Path

from tests.acceptance.conftest import Legato, as_json

FLOWS = str(Path(__file__).with_name("flows.py"))


def test_a_bad_json_parameter_says_where_it_breaks(legato: Legato) -> None:
    bad = legato("run", f"{FLOWS}:bracketed", "-p", "items=[a.h5,b.h5]")
    assert bad.returncode == 2
    assert "'[a.h5,b.h5]' is not valid JSON (Expecting value at column 2)" in bad.stderr
    assert 'paths=["a.h5","b.h5"]' in bad.stderr
    assert as_json(legato("runs", "ls", "--json")) == []  # nothing was started
    cut = legato("run", f"{FLOWS}:bracketed", "-p", 'items=["a.h5",')
    assert cut.returncode == 2 and "at column 9" in cut.stderr


def test_errors_with_brackets_are_printed_as_written(legato: Legato) -> None:
    ran = legato("run", f"{FLOWS}:bracketed", "-p", 'items=["a.h5","b.h5"]')
    assert ran.returncode == 1
    written = "[bold]no item[/bold] [2] in ['a.h5', 'b.h5']"
    assert written in ran.stderr
    run_id = as_json(legato("runs", "ls", "--json"))[0]["id"]
    shown = legato("runs", "show", run_id)
    assert shown.returncode == 1  # the run's code
    assert "[bold]no item[/bold] [2]" in shown.stdout
    listed = legato("runs", "ls")
    assert '["a.h5", "b.h5"]' in listed.stdout  # parameters with brackets, visible


def test_runs_show_exits_with_its_runs_code(legato: Legato) -> None:
    done = legato("run", f"{FLOWS}:arithmetic", "-p", "n=2")
    paused = legato("run", f"{FLOWS}:approval", "-p", "item=a")
    failed = legato("run", f"{FLOWS}:failing")
    assert (done.returncode, paused.returncode, failed.returncode) == (0, 3, 1)
    runs = {r["flow"]: r["id"] for r in as_json(legato("runs", "ls", "--json"))}
    for flow, code in (("arithmetic", 0), ("approval", 3), ("failing", 1)):
        assert legato("runs", "show", runs[flow]).returncode == code, flow
        assert legato("runs", "show", runs[flow], "--json").returncode == code, flow


def test_a_prompt_with_brackets_is_shown_as_written(legato: Legato) -> None:
    asked = legato("run", f"{FLOWS}:bracketed_question", "-p", "item=[a]")
    assert asked.returncode == 3
    assert "ship [/x] [a] [bold]now[/bold]?" in asked.stderr
    run_id = as_json(legato("runs", "ls", "--json"))[0]["id"]
    shown = legato("runs", "show", run_id)
    assert shown.returncode == 3, shown.stderr
    assert "ship [/x] [a] [bold]now[/bold]?" in shown.stdout
