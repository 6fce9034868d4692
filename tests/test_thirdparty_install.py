"""A third-party plugin, built as a real distribution and installed into a temporary site
directory, is discovered through the entry point, listed and usable -- the same path the
built-in plugins take."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import THIRDPARTY


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is required to build the fixture distribution")
    target = tmp_path_factory.mktemp("site")
    src = tmp_path_factory.mktemp("src") / "thirdparty"
    shutil.copytree(THIRDPARTY, src, ignore=shutil.ignore_patterns("example", "__pycache__"))
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            "--python",
            sys.executable,
            str(src),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,  # a local build of a tiny distribution: seconds
    )
    assert (target / "routers_example_configmap").is_dir()
    return target


def run(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("ROUTERS_DISABLE_PLUGINS", None)
    return subprocess.run(
        [sys.executable, "-m", "routers", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


def test_listed_with_distribution_and_version(site: Path) -> None:
    proc = run(site, "plugins", "list", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["configmap"]["distribution"] == "routers-example-configmap"
    assert rows["configmap"]["version"] == "0.3.0"
    assert rows["configmap"]["status"] == "loaded"


def test_usable_for_the_offline_main_job(site: Path) -> None:
    ex = THIRDPARTY / "example"
    proc = run(
        site,
        "plan",
        "--config",
        str(ex / "routing.yaml"),
        "--state",
        str(ex / "state.yaml"),
        "-f",
        str(ex / "live.yaml"),
    )
    assert proc.returncode == 0, proc.stderr
    (obj,) = list(yaml.safe_load_all(proc.stdout))
    assert json.loads(obj["data"]["weights.json"])["web-canary"] == 20


def test_disabled_by_environment(site: Path) -> None:
    env_site = site
    ex = THIRDPARTY / "example"
    env = {**os.environ, "PYTHONPATH": str(env_site), "ROUTERS_DISABLE_PLUGINS": "configmap"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "routers",
            "plan",
            "--config",
            str(ex / "routing.yaml"),
            "--state",
            str(ex / "state.yaml"),
            "-f",
            str(ex / "live.yaml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "disabled by ROUTERS_DISABLE_PLUGINS" in proc.stderr
