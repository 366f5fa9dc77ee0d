"""Kubernetes pools. No cluster runs here: the Job manifests are generated and validated, the
official client's calls are served by a fake API server speaking the API's wire format (which
really runs each Job's command), and a real-cluster test runs only when KUBECONFIG is set."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from legato.engines import EngineJob, check_pool
from legato.errors import UsageError
from legato.models import Pool

from .conftest import create_pool, run_flow
from .fake_kubernetes import FakeKubernetes

pytest.importorskip("kubernetes")

from legato.engines.kubernetes import check_manifest, job_manifest

POOL = Pool("k8s", "kubernetes", {"image": "registry.lab/legato:1.0", "namespace": "lab"})


def _job(**kw: Any) -> EngineJob:
    values: dict[str, Any] = dict(
        run_id="0190f3a2-1111-7222-8333-444455556666",
        attempt=2,
        name="Extract_Tracks",
        payload=b"",
        resources={"gpu": 1, "cpu": 2, "mem_gb": 16},
        timeout=3600.5,
    )
    values.update(kw)
    return EngineJob(**values)


def test_a_job_manifest_maps_resources_timeout_and_retries() -> None:
    m = job_manifest(_job(), POOL, payload_url="s3://b/call.pkl", outcome_url="s3://b/out.pkl")
    assert check_manifest(m) == []
    assert m["apiVersion"] == "batch/v1" and m["kind"] == "Job"
    assert m["metadata"]["namespace"] == "lab"
    assert m["metadata"]["name"] == "legato-extract-tracks-444455556666-2"
    spec = m["spec"]
    assert spec["backoffLimit"] == 0  # retries are ours
    assert spec["activeDeadlineSeconds"] == 3601
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    [c] = pod["containers"]
    assert c["image"] == "registry.lab/legato:1.0"
    assert c["command"] == [
        "python", "-m", "legato.engines.job", "s3://b/call.pkl", "s3://b/out.pkl"
    ]  # fmt: skip
    assert c["resources"] == {
        "requests": {"cpu": "2000m", "memory": "16384Mi"},
        "limits": {"cpu": "2000m", "memory": "16384Mi", "nvidia.com/gpu": "1"},
    }


def test_the_official_client_accepts_the_manifest_as_a_v1job() -> None:
    from kubernetes import client

    m = job_manifest(_job(), POOL, payload_url="/x/call.pkl", outcome_url="/x/out.pkl")

    job = client.ApiClient().deserialize(json.dumps(m), "V1Job", "application/json")
    assert job.spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    assert job.spec.backoff_limit == 0
    again = client.ApiClient().sanitize_for_serialization(job)
    assert again["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "/x/out.pkl"


def test_names_stay_dns_labels_and_bad_manifests_are_caught() -> None:
    long = _job(name="A very Long task NAME with_underscores and ünïcode " * 3, resources={})
    m = job_manifest(long, POOL, payload_url="a", outcome_url="b")
    assert check_manifest(m) == [] and len(m["metadata"]["name"]) <= 63
    m["metadata"]["name"] = "Bad_Name"
    m["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "two"}}
    assert len(check_manifest(m)) == 2


def test_pool_options_are_checked() -> None:
    with pytest.raises(UsageError, match="unknown option"):
        check_pool(Pool("k", "kubernetes", {"imgae": "x"}))
    with pytest.raises(UsageError, match="unknown pool type"):
        check_pool(Pool("k", "mesos", {}))


@pytest.fixture
def fake_api() -> Iterator[FakeKubernetes]:
    fake = FakeKubernetes()
    yield fake
    fake.close()


@pytest.mark.postgres
def test_a_task_runs_as_a_job_through_the_fake_api(
    cluster: Any, fake_api: FakeKubernetes, tmp_path: Path
) -> None:
    create_pool(
        cluster,
        "k8s",
        "kubernetes",
        image="registry.lab/legato:1.0",
        host=fake_api.url,
        python=sys.executable,
        storage=str(tmp_path / "k8s-storage"),
        poll="0.2",
    )
    cluster.start_worker("k8s-bridge", "k8s", "cpu=1")
    cluster.wait_for_workers("k8s-bridge")
    code, run, err = run_flow(cluster, "on_k8s", "x=21")
    assert code == 0, err
    assert run["result"] == 42
    [tr] = run["task_runs"]
    name = tr["engine_job_id"].removeprefix("kubernetes:")
    manifest = fake_api.jobs[name]
    assert check_manifest(manifest) == []
    limits = manifest["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "2000m", "memory": "4096Mi", "nvidia.com/gpu": "1"}
    assert manifest["spec"]["activeDeadlineSeconds"] == 120
    assert ("POST", "/apis/batch/v1/namespaces/default/jobs") in fake_api.requests
    assert "inside the pod" in cluster.legato("runs", "logs", run["id"]).stdout

    code, run, err = run_flow(cluster, "k8s_failing")
    assert code == 1
    [tr] = run["task_runs"]
    assert tr["state"] == "FAILED" and tr["attempts"] == 2
    assert "bad input in the pod" in tr["error"]


@pytest.mark.kubernetes_cluster
@pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs KUBECONFIG (a real cluster)")
def test_on_a_real_cluster(cluster: Any, tmp_path: Path) -> None:
    """Needs an image with Legato installed (LEGATO_TEST_K8S_IMAGE) and storage both sides
    reach (LEGATO_TEST_K8S_STORAGE, an fsspec URL such as s3://bucket/legato-jobs)."""
    image = os.environ.get("LEGATO_TEST_K8S_IMAGE")
    storage = os.environ.get("LEGATO_TEST_K8S_STORAGE")
    if not image or not storage:
        pytest.skip("set LEGATO_TEST_K8S_IMAGE and LEGATO_TEST_K8S_STORAGE")
    create_pool(cluster, "k8s", "kubernetes", image=image, storage=storage)
    cluster.start_worker("k8s-bridge", "k8s", "cpu=1")
    cluster.wait_for_workers("k8s-bridge")
    code, run, err = run_flow(cluster, "on_k8s", "x=21", timeout=600)
    assert code == 0, err
    assert run["result"] == 42
