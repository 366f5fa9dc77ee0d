"""Artifacts outside a run do nothing (tasks stay plain functions); bad input is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from legato import artifact
from legato.errors import UsageError


def test_outside_a_run_artifacts_do_nothing_and_return_none(tmp_path: Path) -> None:
    image = tmp_path / "plot.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert artifact.markdown("# hi") is None
    assert artifact.table([{"a": 1}]) is None
    assert artifact.table([[1, 2]], columns=["x", "y"]) is None
    assert artifact.image(image) is None
    assert artifact.image(b"\x89PNG") is None
    assert artifact.link("https://example.org", "title") is None


def test_markdown_needs_text() -> None:
    with pytest.raises(UsageError, match="str"):
        artifact.markdown(b"bytes")  # type: ignore[arg-type]


def test_an_image_that_cannot_be_read_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    with pytest.raises(UsageError, match=r"missing\.png"):
        artifact.image(missing)


def test_an_image_over_the_limit_is_refused() -> None:
    with pytest.raises(UsageError, match="byte limit"):
        artifact.image(b"\x89PNG" + b"\x00" * artifact.MAX_IMAGE_BYTES)  # type: ignore[attr-defined]


def test_the_public_artifact_functions() -> None:
    assert set(artifact.__all__) == {"markdown", "table", "image", "link"}
