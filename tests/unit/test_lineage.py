"""The lineage registry alone: what identity may tell apart, and what it keeps alive."""

from __future__ import annotations

import enum

import numpy as np

from legato.engine.lineage import HELD_MAX, MAX, Lineage


class Colour(enum.Enum):
    RED = 1


def test_shared_values_give_no_edge() -> None:
    lin = Lineage()
    shared = [
        "processing_complete_ok",  # identifier-like: interned, shared with any equal literal
        Colour.RED,
        np.True_,
        np.float64(1.0),
        ...,
        int,
        len,
        np,
        None,
        True,
        7,
        2.5,
        "short",
        (),
    ]
    for i, value in enumerate(shared):
        lin.produced(value, f"t{i}")
    assert lin.sources(tuple(shared), {}) == []


def test_a_value_handed_back_is_not_the_tasks_product() -> None:
    lin = Lineage()
    config = {"threshold": 0.5, "model": "/models/pose-v3.pt"}
    lin.produced(config, "echo", given=(config,))
    assert lin.sources((config,), {}) == []
    made = {"threshold": 0.5}
    lin.produced(made, "make")
    assert lin.sources((made,), {}) == ["make"]


def test_big_values_are_not_kept_alive_and_the_total_is_bounded() -> None:
    lin = Lineage()
    big = b"x" * (2 * 2**20)
    lin.produced(big, "big")
    assert lin.sources((big,), {}) == []  # too big to hold for an edge
    arrays = [np.zeros(2**18) for _ in range(3)]  # weakly held: any size
    for i, a in enumerate(arrays):
        lin.produced(a, f"a{i}")
    assert lin.sources(tuple(arrays), {}) == ["a0", "a1", "a2"]
    for i in range(MAX + 500):
        lin.produced(f"/lab/recordings/session-{i:06d}/frames.npz" + "-" * 2000, f"p{i}")
    assert len(lin._by_id) <= MAX and lin._held <= HELD_MAX
