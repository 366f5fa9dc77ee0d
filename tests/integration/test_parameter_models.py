"""A flow's parameter model and its per-parameter TypeAdapters are built once per flow, not
once per run: building them costs far more than validating with them."""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
import pytest

from legato import flow
from legato.errors import ParameterError
from legato.runtime import get_runtime
from legato.testing import last_flow_run


def test_parameter_models_are_built_once_per_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Any] = []
    real_adapter, real_model = pydantic.TypeAdapter, pydantic.create_model

    def counting_adapter(*args: Any, **kwargs: Any) -> Any:
        built.append(("adapter", args[0]))
        return real_adapter(*args, **kwargs)

    def counting_model(*args: Any, **kwargs: Any) -> Any:
        built.append(("model", args[0]))
        return real_model(*args, **kwargs)

    monkeypatch.setattr(pydantic, "TypeAdapter", counting_adapter)
    monkeypatch.setattr(pydantic, "create_model", counting_model)

    @flow
    def scaled(x: int, factor: float = 2.0, label: str = "a") -> float:
        return x * factor

    assert [scaled(n) for n in range(5)] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert scaled(x="3", label="b") == 6.0  # validated: "3" became 3
    with pytest.raises(ParameterError, match="x"):
        scaled(x="three")
    assert last_flow_run(get_runtime().store).parameters == {"x": 3, "factor": 2.0, "label": "b"}
    assert sorted(kind for kind, _ in built) == ["adapter"] * 3 + ["model"]


@flow
def calibrate(frames: Annotated[int, pydantic.Field(ge=1, le=100)] = 10) -> int:
    return frames


def test_annotated_constraints_are_kept_in_validation_and_the_recorded_schema() -> None:
    assert calibrate.parameter_schema()["properties"]["frames"]["minimum"] == 1
    with pytest.raises(ParameterError, match="greater than or equal to 1"):
        calibrate.validate((), {"frames": 0})  # was accepted: the Annotated part was dropped
    assert calibrate.validate((), {"frames": 7}) == {"frames": 7}
