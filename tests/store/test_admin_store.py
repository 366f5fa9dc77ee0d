"""The admin store's contract (``AdminStore``: what people and the server manage): pool
definitions, concurrency limits, deployments, API tokens. The same tests on every backend
(SQLite, PostgreSQL, HTTP); schedules, triggers and notifications have theirs in
tests/triggers."""

from __future__ import annotations

import pytest

from legato.models import Deployment, Pool, Role
from legato.store import Store


def test_pools_are_created_replaced_listed_and_removed(store: Store) -> None:
    assert store.get_pool("gpu") is None and store.list_pools() == []
    store.put_pool(Pool("gpu", "slurm", {"partition": "gpu"}, created_at=100.0))
    store.put_pool(Pool("cpu", "dask", {"address": "tcp://127.0.0.1:8786"}, created_at=101.0))
    store.put_pool(Pool("gpu", "slurm", {"partition": "a100", "qos": "high"}, created_at=200.0))
    gpu = store.get_pool("gpu")
    assert gpu is not None
    assert gpu.options == {"partition": "a100", "qos": "high"} and gpu.created_at == 100.0
    assert [(p.name, p.type) for p in store.list_pools()] == [("cpu", "dask"), ("gpu", "slurm")]
    assert store.delete_pool("gpu") and not store.delete_pool("gpu")
    assert [p.name for p in store.list_pools()] == ["cpu"]


def test_tokens_store_only_a_hash_and_can_be_revoked(store: Store) -> None:
    token, secret = store.create_token("ci-bot", Role.OPERATOR)
    assert secret.startswith("lgt_") and len(secret) > 30
    found = store.verify_token(secret)
    assert found is not None and found.id == token.id and found.role is Role.OPERATOR
    assert store.verify_token(secret + "x") is None
    assert all(secret not in repr(t.to_json()) for t in store.list_tokens())
    store.touch_token(token.id)
    assert store.list_tokens()[0].last_used_at is not None
    assert store.revoke_token("ci-bot")
    assert store.verify_token(secret) is None
    assert not store.revoke_token("ci-bot")  # already revoked
    assert store.list_tokens()[0].revoked_at is not None


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR) and Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR)


@pytest.mark.parametrize("bad", ["", "   "])
def test_a_token_needs_a_name(store: Store, bad: str) -> None:
    from legato.errors import UsageError

    with pytest.raises(UsageError):
        store.create_token(bad, Role.VIEWER)


def test_limits_are_set_listed_and_removed(store: Store) -> None:
    assert store.list_limits() == {}
    store.set_limit("pool:gpu", 2)
    store.set_limit("pool:gpu", 3)  # replaced
    store.set_limit("tag:db", 1)
    assert store.list_limits() == {"pool:gpu": 3, "tag:db": 1}
    assert store.delete_limit("tag:db") and not store.delete_limit("tag:db")
    assert store.list_limits() == {"pool:gpu": 3}


def test_deployments_are_created_replaced_listed_and_removed(store: Store) -> None:
    dep = Deployment(
        "etl", "etl", "pipelines.etl:etl", "cpu", {"n": 1}, ["nightly"], "v1", 1.0, 1.0
    )
    store.put_deployment(dep)
    assert store.get_deployment("etl") == dep
    store.put_deployment(
        Deployment("etl", "etl", "pipelines.etl:etl", "gpu", {}, [], "v2", 5.0, 5.0)
    )
    again = store.get_deployment("etl")
    assert again is not None and again.pool == "gpu" and again.created_at == 1.0
    assert [d.name for d in store.list_deployments()] == ["etl"]
    assert store.delete_deployment("etl") and not store.delete_deployment("etl")
    assert store.get_deployment("etl") is None and store.list_deployments() == []
