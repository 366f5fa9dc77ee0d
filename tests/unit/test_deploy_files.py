"""The deployment files in deploy/ are checked with the validators a container platform
would apply, since no container engine or cluster runs here: the compose file against the
compose-spec JSON schema, the Kubernetes manifests against Kubernetes' OpenAPI schemas
(strict: no unknown fields), the Dockerfiles with hadolint, and the systemd units with
systemd-analyze. Each validator is also shown to refuse a broken file, so a pass means
something. What these do not show (an image that builds, a pod that starts) is said in
docs/deploy.md."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).parents[2] / "deploy"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing; CI=true requires it (make install)")
        pytest.skip(f"{name} is not installed (make install)")
    return found


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_the_compose_file_follows_the_compose_spec(tmp_path: Path) -> None:
    check = _tool("check-jsonschema")
    ok = _run(check, "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  server:\n    image: 3\n    restart: sometimes\n")
    bad = _run(check, "--builtin-schema", "vendor.compose-spec", str(broken))
    assert bad.returncode != 0 and "services.server" in bad.stdout


def test_the_kubernetes_manifests_validate_strictly(tmp_path: Path) -> None:
    validate = _tool("kubernetes-validate")
    manifests = sorted(str(p) for p in (DEPLOY / "kubernetes").glob("*.yaml"))
    assert len(manifests) == 4
    ok = _run(validate, "--strict", *manifests)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(" passed for resource ") == 9  # namespace, config, pvc, 2+4
    gpu = (DEPLOY / "kubernetes" / "30-workers.yaml").read_text()
    assert "nvidia.com/gpu: 1" in gpu  # the gpu pool's pods request a GPU
    broken = tmp_path / "bad.yaml"
    broken.write_text(gpu.replace("terminationGracePeriodSeconds", "terminationGraceSeconds", 1))
    bad = _run(validate, "--strict", str(broken))
    assert bad.returncode != 0 and "terminationGraceSeconds" in bad.stdout + bad.stderr


@pytest.mark.parametrize("name", ["server", "worker", "worker-cuda"])
def test_each_dockerfile_passes_hadolint_and_is_multi_stage_non_root_and_checked(
    name: str, tmp_path: Path
) -> None:
    hadolint = _tool("hadolint")
    path = DEPLOY / "docker" / f"Dockerfile.{name}"
    ok = _run(hadolint, "--no-color", str(path))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    from dockerfile_parse import DockerfileParser

    with path.open("rb") as fh:
        parsed = DockerfileParser(fileobj=fh)
        structure = parsed.structure
    instructions = [i["instruction"] for i in structure]
    assert instructions.count("FROM") >= 2, "multi-stage: the build tools stay behind"
    users = [i["value"] for i in structure if i["instruction"] == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    assert "HEALTHCHECK" in instructions
    broken = tmp_path / "Dockerfile"
    broken.write_text(path.read_text().replace("WORKDIR /var/lib/legato", "RUN cd /var/lib/legato"))
    assert _run(hadolint, "--no-color", str(broken)).returncode != 0


def test_the_systemd_units_verify(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    root = tmp_path / "root"
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for unit in (DEPLOY / "systemd").glob("*.service"):
        shutil.copy(unit, units / unit.name)
    # The units name /opt/legato/bin/legato; systemd-analyze checks that it is executable.
    binary = root / "opt" / "legato" / "bin" / "legato"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    system = Path("/usr/lib/systemd/system")
    if system.is_dir():  # the targets the units are ordered against
        shutil.copytree(system, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    args = (analyze, "verify", "--man=no", f"--root={root}")
    ok = _run(*args, "legato-server.service", "legato-worker@gpu.service")
    assert ok.returncode == 0 and not ok.stderr.strip(), ok.stderr
    (units / "broken.service").write_text(
        "[Service]\nExecStart=/opt/legato/bin/legato worker start\nRestart=sometimes\n"
    )
    bad = _run(*args, "broken.service")
    assert "restart specifier" in bad.stderr, bad.stderr
