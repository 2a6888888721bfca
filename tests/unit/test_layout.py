"""The package mirrors the deployed system and its imports run one way, top to bottom:
``cli`` -> the Python API (``api``, ``estimators``) -> ``engine`` -> ``steps`` -> ``forest``
-> ``data`` -> ``store`` -> ``errors``; no module imports a layer above its own, and no
modules import each other in a circle (imports inside functions count too)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "src" / "groves"
LAYERS = ["errors", "store", "data", "forest", "steps", "engine", "api", "cli"]
RANK = {**{name: i for i, name in enumerate(LAYERS)}, "estimators": LAYERS.index("api")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every ``groves`` module ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("groves.")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("groves"):
            module = node.module or ""
            for alias in node.names:  # ``from groves.cli import inspect``: a module, or a name
                child = f"{module}.{alias.name}"
                exists = (PACKAGE.parent / child.replace(".", "/")).with_suffix(".py").exists()
                found.add(child if exists else module)
    return found - {"groves"}


def layer(module: str) -> int:
    return RANK[module.split(".")[1]]


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PACKAGE.rglob("*.py") if module_name(p) != "groves"}


def test_every_module_is_in_a_layer_and_imports_only_its_own_or_lower() -> None:
    upward = [
        (module, target)
        for module, targets in graph().items()
        for target in targets
        if layer(target) > layer(module)
    ]
    assert upward == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    edges = graph()
    seen: dict[str, str] = {}  # module -> "active" while on the path, "done" after

    def visit(module: str, path: list[str]) -> list[str] | None:
        seen[module] = "active"
        for target in sorted(edges.get(module, ())):
            if seen.get(target) == "active":
                return [*path, module, target]
            if target not in seen and (cycle := visit(target, [*path, module])):
                return cycle
        seen[module] = "done"
        return None

    cycles = [c for m in sorted(edges) if m not in seen and (c := visit(m, []))]
    assert cycles == []


def test_each_subpackage_maps_its_modules_in_its_docstring() -> None:
    for package in ("steps", "forest", "data", "store", "engine", "cli"):
        doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text())) or ""
        modules = [p.stem for p in (PACKAGE / package).glob("*.py") if p.stem[0] != "_"]
        assert [m for m in modules if f"``{m}``" not in doc] == [], package


# The workflows of ``groves.steps`` (``steps/__init__.py``) and what they share. Workflows stand
# side by side: none imports another's modules; the shared modules import no workflow's, but for
# ``handlers``, which calls each.
WORKFLOWS = {
    "training": {"plan", "train", "commit", "score"},
    "batch prediction": {"batch"},
    "search": {"search"},
    "serving": {"serve"},
}
SHARED_STEPS = {
    "request",
    "checks",
    "planned",
    "prepare",
    "trained",
    "cost",
    "events",
    "handlers",
}


def imported_names(path: Path) -> dict[str, set[str]]:
    """The ``groves`` modules ``path`` imports, anywhere in it, each with the names it takes
    from it (``*`` for the module itself)."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("groves."):
                    found.setdefault(alias.name, set()).add("*")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("groves"):
            module = node.module or ""
            for alias in node.names:
                child = f"{module}.{alias.name}"
                if (PACKAGE.parent / child.replace(".", "/")).with_suffix(".py").exists():
                    found.setdefault(child, set()).add("*")
                else:
                    found.setdefault(module, set()).add(alias.name)
    return found


def test_each_step_module_is_one_workflows_or_shared() -> None:
    modules = {p.stem for p in (PACKAGE / "steps").glob("*.py") if p.stem != "__init__"}
    assert modules == set().union(*WORKFLOWS.values()) | SHARED_STEPS


def test_workflows_stand_side_by_side() -> None:
    """GIVEN the step modules, WHEN their imports are read (inside functions too), THEN no
    workflow's module imports another workflow's, and no shared
    module imports a workflow's but ``handlers``, which calls each step."""
    workflow = {m: name for name, modules in WORKFLOWS.items() for m in modules}
    crossings, shared_uses = {}, {}
    for path in (PACKAGE / "steps").glob("*.py"):
        for target, names in imported_names(path).items():
            used = target.removeprefix("groves.steps.")
            if target.startswith("groves.steps.") and used in workflow:
                if path.stem in SHARED_STEPS and path.stem != "handlers":
                    shared_uses[(path.stem, used)] = names
                elif path.stem in workflow and workflow[path.stem] != workflow[used]:
                    crossings[(path.stem, used)] = names
    assert shared_uses == {}
    assert crossings == {}


def test_the_merge_function_starts_without_scikit_learn() -> None:
    """GIVEN the merge function's entry point, WHEN a fresh interpreter loads it and its step,
    THEN neither scikit-learn nor pandas is imported: merge reads grove metadata only, and its
    cold start is its own imports (0.22 s at one core here, 1.39 s when it loaded every step)."""
    code = (
        "import sys; sys.path.insert(0, 'functions/merge'); import app; "
        "from groves.steps import commit; "
        "print(sorted({'sklearn', 'pandas', 'pyarrow', 'scipy'} & set(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_the_cli_parses_its_arguments_without_numpy() -> None:
    """The command line installs its signal handlers once its arguments are parsed: building
    the parser imports no numpy (a Ctrl-C in those first tenths of a second is a traceback)."""
    code = "import sys; from groves.cli import parser; parser(); print('numpy' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "False"
