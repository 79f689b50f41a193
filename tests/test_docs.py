"""The shell examples of README.md and docs/*.md, as users type them.

Every `explainlab ...` line of a ```bash block is composed (each job of a `-m` sweep, `...` being a
placeholder); the cheap ones (CHEAP) are run in a fresh temporary working directory with no
`hydra.run.dir` / `hydra.sweep.dir` and no EXPLAINLAB_ROOT, with a few overrides appended that make
them small, and must leave their run (or sweep, collected) folder. `export` lines of a block apply
to its later lines; `../shared/...` in them means the shared folder beside the checkout.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import SHARED
from tests.test_cli import explainlab, user_env

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# Command as written -> overrides appended to keep it small (each job a few seconds on 2 CPU cores).
TINY_LIBRARY = ["recipe.epochs=1", "attack.steps=2", "attack.eps_list=[0.1]", "method.cpl.images=20"]
CHEAP: dict[str, list[str]] = {
    "explainlab -m seed=0,1,2 recipe.epochs=5": ["recipe.epochs=1"],
    "explainlab -m method=library method.threshold=0.5,0.6,0.7": ["recipe.epochs=1"],
    "explainlab -m experiment=quickstart method.top_k=1,3": TINY_LIBRARY + ["method.thresholds=[0.6,0.9]"],
    "explainlab experiment=mnist_example": ["recipe.epochs=1", "dataset.limit_train=512", "dataset.limit_test=128"],
    "explainlab experiment=cifar_pretrained dataset.verify=false": ["dataset.limit_test=64"],
    "explainlab dataset=cifar10 dataset.verify=false dataset.download=false model=resnet20 method=evaluate "
    "model.pretrained=akamaster": ["dataset.limit_test=64"],
}
# Run as written by another test.
RUN_ELSEWHERE = {"explainlab experiment=quickstart": "tests/test_cli.py::test_quickstart_end_to_end"}
NEEDS_SHARED = {"mnist_example", "cifar_pretrained", "dataset=cifar10"}


@dataclass
class DocCommand:
    source: str  # file:line
    text: str  # the command as written (continuations joined, comment dropped)
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def args(self):  # noqa: ANN201  (argparse.Namespace of Hydra's command line)
        from hydra._internal.utils import get_args_parser

        return get_args_parser().parse_args([a for a in self.argv if a != "..."])  # `...`: a placeholder

    @property
    def multirun(self) -> bool:
        return bool(self.args.multirun)

    @property
    def overrides(self) -> list[str]:
        return list(self.args.overrides)


def shared_path(value: str) -> str:
    """`../shared/...` as the docs mean it (beside the checkout) -> the shared folder of this machine."""
    return str(SHARED / value.removeprefix("../shared/")) if value.startswith("../shared/") else value


def doc_commands() -> list[DocCommand]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for block in re.finditer(r"^```(?:bash|sh|shell)\n(.*?)^```", text, re.S | re.M):
            first_line = text[: block.start(1)].count("\n") + 1
            lines, env, i = block.group(1).splitlines(), {}, 0
            while i < len(lines):
                start, line = i, lines[i]
                while line.rstrip().endswith("\\") and i + 1 < len(lines):  # a continued line
                    i += 1
                    line = line.rstrip()[:-1] + " " + lines[i].strip()
                i += 1
                words = shlex.split(line, comments=True)
                assignments = []
                while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                    assignments.append(words.pop(0))
                if words[:1] == ["export"]:
                    assignments, words = words[1:], []
                parsed = dict(a.split("=", 1) for a in assignments)
                if not words:
                    env |= parsed
                elif words[0] in ("explainlab", "explainlab-collect"):
                    command = " ".join(shlex.quote(w) for w in words)
                    found.append(DocCommand(f"{path.name}:{first_line + start}", command, words[1:], env | parsed))
    return found


def sweep_jobs_of(overrides: list[str]) -> list[list[str]]:
    """The jobs Hydra's basic sweeper makes of a command line's overrides (one without sweeps)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(overrides), None)[0]


def console_scripts() -> set[str]:
    text = (REPO / "pyproject.toml").read_text()
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([\w-]+)\s*=", section, re.M))


COMMANDS = doc_commands()


def test_docs_have_commands_and_the_run_table_is_current() -> None:
    written = {c.text for c in COMMANDS}
    assert len(COMMANDS) > 20 and any(c.multirun for c in COMMANDS)
    for command in [*CHEAP, *RUN_ELSEWHERE]:
        assert command in written, f"{command!r} is no longer in the docs: update CHEAP/RUN_ELSEWHERE"


@pytest.mark.parametrize("doc", COMMANDS, ids=[f"{c.source} {c.text[:60]}" for c in COMMANDS])
def test_documented_command_composes(doc: DocCommand, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if doc.text.startswith("explainlab-collect"):
        assert "explainlab-collect" in console_scripts()
        return
    from explainlab.config import check_override_keys, compose_config

    if any("launcher=slurm" in o or "launcher=submitit" in o for o in doc.overrides):
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    for key, value in doc.env.items():
        monkeypatch.setenv(key, shared_path(value))
    check_override_keys(doc.overrides)
    jobs = sweep_jobs_of(doc.overrides)
    assert doc.multirun or len(jobs) == 1, "a comma list without -m"
    for number, job in enumerate(jobs[:4]):
        cfg = compose_config(job, output_dir=tmp_path / str(number))
        assert cfg.paths.output_dir and cfg.task_name


RUNS = list({c.text: c for c in reversed(COMMANDS) if c.text in CHEAP}.values())[::-1]  # each once


@pytest.mark.parametrize("doc", RUNS, ids=[f"{c.source} {c.text[:60]}" for c in RUNS])
def test_documented_command_runs(doc: DocCommand, tmp_path: Path) -> None:
    shared = any(tag in doc.text for tag in NEEDS_SHARED)
    if shared and not (SHARED / "data").is_dir():
        pytest.skip(f"needs {SHARED}/data")
    env = {key: shared_path(value) for key, value in doc.env.items()}
    if shared:  # the docs assume the project machine's offline copies (README, "Data")
        env = {"EXPLAINLAB_DATA": str(SHARED / "data"), "EXPLAINLAB_MODELS": str(SHARED / "models" / "cifar10")} | env
    proc = explainlab(*doc.argv, *CHEAP[doc.text], "progress=false", cwd=tmp_path, timeout=500, env=user_env(**env))
    assert proc.returncode == 0, proc.stderr[-4000:]
    if doc.multirun:
        (sweep,) = (tmp_path / "outputs").glob("*/multiruns/*")
        n_jobs = len(sweep_jobs_of(doc.overrides))
        collected = pd.read_csv(sweep / "collected" / "metrics.csv")
        assert collected["status"].tolist() == ["completed"] * n_jobs, collected
        assert (sweep / "collected" / "summary.txt").is_file()
    else:
        (run,) = (tmp_path / "outputs").glob("*/runs/*")
        assert json.loads((run / "status.json").read_text())["status"] == "completed"
        assert (run / "metrics.json").is_file() and f"run directory: {run}" in proc.stdout
