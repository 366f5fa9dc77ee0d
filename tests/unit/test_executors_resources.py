"""Local GPU hand-out: whole GPUs, the ids this process can see."""

from __future__ import annotations

import threading

import pytest

from legato import task
from legato.errors import UsageError
from legato.executors import LocalResources


def test_gpu_ids_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    res = LocalResources({"gpu": 2.0})
    never = threading.Event()
    first = res.acquire({"gpu": 1.0}, never)
    second = res.acquire({"gpu": 1.0}, never)
    assert sorted(first + second) == [2, 3]


def test_without_cuda_visible_devices_ids_start_at_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    res = LocalResources({"gpu": 3.0})
    assert res.acquire({"gpu": 3.0}, threading.Event()) == [0, 1, 2]


@pytest.mark.parametrize("amount", [0.5, -1])
def test_a_fraction_of_a_gpu_is_refused_at_definition(amount: float) -> None:
    with pytest.raises(UsageError, match="GPUs are handed out whole"):
        task(resources={"gpu": amount})(lambda: None)
