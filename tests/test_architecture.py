"""The import rules of docs/architecture.md, read from the source with `ast` (lazy imports inside
functions count too): methods/ see no Hydra, Lightning, runner or results; no runner study imports
another; the lower layers never import the ones above them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "explainlab"


def imported_modules(path: Path, package: str | None = None) -> set[str]:
    """Every module `path` imports (absolute names; relative imports resolved against its package,
    by default the one it lies in)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = package or ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def sources(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py")) if folder else []


def offending(paths: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in paths:
        bad = sorted(m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            found[str(path.relative_to(PACKAGE))] = bad
    return found


def study_modules() -> set[str]:
    """runner modules named by a `_target_` of conf/method/*.yaml (the studies and tasks)."""
    modules = set()
    for path in (PACKAGE / "conf" / "method").glob("*.yaml"):
        target = (yaml.safe_load(path.read_text()) or {}).get("_target_", "")
        if target.startswith("explainlab.runner."):
            modules.add(target.rsplit(".", 1)[0])
    return modules


ABOVE_METHODS = ("explainlab.runner", "explainlab.results", "explainlab.cli", "explainlab.config", "explainlab.sweep")
FRAMEWORKS = ("hydra", "omegaconf", "lightning", "pytorch_lightning")


def test_methods_import_no_runner_results_hydra_or_lightning() -> None:
    assert offending(sources("methods"), ABOVE_METHODS + FRAMEWORKS) == {}


@pytest.mark.parametrize("folder", ["models", "data", "attacks"])
def test_lower_layers_import_nothing_above_them(folder: str) -> None:
    assert offending(sources(folder), (*ABOVE_METHODS, "explainlab.methods")) == {}


def test_results_import_no_runner_and_io_imports_no_explainlab() -> None:
    assert offending(sources("results"), ("explainlab.runner", "explainlab.cli")) == {}
    assert offending([PACKAGE / "io.py", PACKAGE / "errors.py"], ("explainlab",)) == {}
    assert offending([PACKAGE / "config.py"], ("explainlab.cli",)) == {}


def test_no_study_imports_another_study() -> None:
    studies = study_modules()
    assert {"explainlab.runner.library", "explainlab.runner.heatmaps", "explainlab.runner.train"} <= studies
    for module in sorted(studies):
        path = PACKAGE.parent / (module.replace(".", "/") + ".py")
        others = tuple(sorted(studies - {module}))
        assert offending([path], others) == {}, f"{module} imports another study"


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    path = tmp_path / "probe.py"
    path.write_text("def f():\n    from explainlab.results import figures\n\nfrom ...runner import context\n")
    names = imported_modules(path, package="explainlab.methods.library")
    assert {"explainlab.results.figures", "explainlab.runner.context"} <= names
    assert offending.__name__ and any(n.startswith("explainlab.runner") for n in names)


def test_no_study_config_builds_another_study() -> None:
    """A study never receives another study (Hydra would build it from a nested `_target_` and the
    study would call it by duck typing): shared science is in methods/, shared steps in runner services."""

    def targets(node: object) -> list[str]:
        if isinstance(node, dict):
            own = [str(node["_target_"])] if "_target_" in node else []
            return own + [t for v in node.values() for t in targets(v)]
        return [t for v in node for t in targets(v)] if isinstance(node, list) else []

    studies = study_modules()
    for path in sorted((PACKAGE / "conf" / "method").glob("*.yaml")):
        nested = targets({k: v for k, v in (yaml.safe_load(path.read_text()) or {}).items() if k != "_target_"})
        assert not [t for t in nested if t.rsplit(".", 1)[0] in studies], f"{path.name} builds a study inside a study"
