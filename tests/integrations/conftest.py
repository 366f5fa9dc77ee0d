from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.triggers.conftest import flows_file, store  # noqa: F401  (shared fixtures)

from .fake_slack import FakeSlack


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()
