"""A wheel that works: built from the sources alone, it holds every config, and installed into a fresh
virtual environment it runs the quickstart from an empty folder, using nothing of the checkout."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.test_cli import only_dir, user_env

REPO = Path(__file__).resolve().parents[1]


def run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def can_build_here() -> bool:
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec

    try:
        major, minor = (int(x) for x in version("setuptools").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (70, 1) or ((major, minor) >= (64, 0) and find_spec("wheel") is not None)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built by pip from a copy of pyproject.toml, README.md and src/ alone."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # This environment's setuptools builds it offline when it can (>= 70.1, or with `wheel`); otherwise
    # pip fetches the build requirements (pyproject's build-system) from the package index.
    isolation = ["--no-build-isolation"] if can_build_here() else []
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation]
    run(*command, "--wheel-dir", root / "dist", source, timeout=600)
    return only_dir("dist/explainlab-*.whl", root)


def test_wheel_holds_every_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = REPO / "src" / "explainlab" / "conf"
    configs = {"explainlab/conf/" + p.relative_to(conf).as_posix() for p in conf.rglob("*.yaml")}
    assert (
        "explainlab/conf/hydra/launcher/slurm_ddp.yaml" in configs
        and "explainlab/conf/hydra/help/explainlab.yaml" in configs
    )
    assert configs - names == set()
    assert "explainlab/py.typed" in names and not any(n.startswith(("tests/", "conf/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert (
        "explainlab = explainlab.cli:main" in scripts
        and "explainlab-collect = explainlab.results.collect:main" in scripts
    )


def test_installed_wheel_runs_the_quickstart_from_an_empty_folder(wheel: Path, tmp_path: Path) -> None:
    """A fresh venv with the wheel (no dependencies: those of this environment are made visible by a
    .pth path line, which adds no editable-install hooks), then the README's first command as written."""
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, timeout=300)
    python = venv / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip())
    (purelib / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", wheel, timeout=300)
    env = {k: v for k, v in user_env().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    where = tmp_path / "empty"
    where.mkdir()
    probe = "import explainlab, explainlab.cli as c; print(explainlab.__file__); print(c.CONF_DIR)"
    module, conf_dir = run(python, "-c", probe, cwd=where, env=env).stdout.split()
    assert Path(module).is_relative_to(venv) and Path(conf_dir).is_relative_to(venv)
    proc = run(venv / "bin" / "explainlab", "experiment=quickstart", cwd=where, env=env, timeout=900)
    result = only_dir("outputs/quickstart/runs/*", where)
    assert json.loads((result / "metrics.json").read_text())["test/acc"] > 0.9, proc.stdout[-2000:]
    assert not Path(module).is_relative_to(REPO)
