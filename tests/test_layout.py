"""The package's layering: what each subpackage may import (their docstrings say the same), no
import cycle between modules, every module importable on its own, files of a readable size."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gan_lightning"

BASE = {"errors", "torch_utils", "images", "version"}
# unit -> the units it may import ("unit": the first name under gan_lightning, e.g. core, build).
ALLOWED: dict[str, set[str]] = {
    "errors": set(), "torch_utils": set(), "images": set(), "version": set(),
    "lightning_state": set(),  # Lightning's private state, read in one place by the layers that run in a Trainer
    "core": BASE,
    "layers": BASE,
    "networks": BASE | {"layers"},
    "data": BASE,
    "metrics": BASE | {"data"},
    "diagnostics": BASE | {"core", "layers"},
    "config": BASE | {"core", "data", "networks", "metrics"},
    "modules": BASE | {"core", "layers", "networks", "diagnostics", "lightning_state"},
    "callbacks": BASE | {"core", "data", "diagnostics", "metrics", "lightning_state"},
    "trainer": BASE | {"config", "metrics", "diagnostics", "modules", "lightning_state"},
    "build": BASE | {"config", "core", "layers", "networks", "data", "metrics", "diagnostics", "modules", "callbacks",
                     "trainer", "lightning_state"},
    "runs": BASE | {"config", "core", "layers", "networks", "data", "metrics", "diagnostics", "modules", "callbacks",
                    "trainer", "build", "lightning_state"},
    "experiments": BASE | {"config", "core", "layers", "networks", "data", "metrics", "diagnostics", "modules",
                           "callbacks", "trainer", "build", "runs", "experiments", "lightning_state"},
    "__init__": BASE | {"config", "core", "layers", "networks", "data", "metrics", "diagnostics", "modules",
                        "callbacks"},
}
NO_LIGHTNING = {"errors", "torch_utils", "images", "version", "core", "layers", "networks", "diagnostics", "config"}
MAX_LINES = 420  # "about 400"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions (``from a import b``: a,
    and a.b when that is a module of the package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").is_file() or \
                        (PACKAGE.parent / sub.replace(".", "/") / "__init__.py").is_file():
                    found.add(sub)
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: {m for m in imports(path) if m.split(".")[0] == "gan_lightning" and m != name}
         for name, path in MODULES.items()}


def layering_problems(graph: dict[str, set[str]], third_party: dict[str, set[str]]) -> list[str]:
    problems = []
    for name, targets in graph.items():
        for target in sorted(targets):
            if unit(target) != unit(name) and unit(target) not in ALLOWED[unit(name)]:
                problems.append(f"{name} imports {target}")
        if unit(name) in NO_LIGHTNING and any(m.split(".")[0] in ("lightning", "pytorch_lightning")
                                              for m in third_party[name]):
            problems.append(f"{name} imports Lightning")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles between modules (a package's __init__ re-exporting its own modules is no cycle)."""
    def edges(name: str) -> set[str]:
        return {t for t in graph.get(name, ()) if t in graph and not t.startswith(name + ".")}

    found, state = [], {}
    def visit(name: str, stack: list[str]) -> None:
        state[name] = "open"
        for target in sorted(edges(name)):
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[name] = "done"
    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return found


def test_every_unit_has_a_rule_and_says_it():
    units = {unit(name) for name in MODULES}
    assert units <= set(ALLOWED), units - set(ALLOWED)
    for name in ("core", "layers", "diagnostics", "metrics", "data", "experiments", "runs", "trainer", "config"):
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc and "May import" in doc, name


def test_the_units_are_floors_no_unit_may_import_one_that_may_import_it():
    """The rules themselves have no cycle (e.g. runs -> build -> trainer, never build -> runs)."""
    def reach(u: str, seen: set[str]) -> set[str]:
        for v in ALLOWED[u] - {u} - seen:
            seen.add(v)
            reach(v, seen)
        return seen
    assert [u for u in ALLOWED if u in reach(u, set())] == []


def test_subpackages_import_only_what_their_layer_allows():
    third_party = {name: imports(path) for name, path in MODULES.items()}
    assert layering_problems(GRAPH, third_party) == []


def test_a_forbidden_import_is_caught():
    third_party = {name: set() for name in MODULES}
    bad = {**GRAPH, "gan_lightning.core.losses": GRAPH["gan_lightning.core.losses"] | {"gan_lightning.modules.gan"}}
    assert layering_problems(bad, third_party) == ["gan_lightning.core.losses imports gan_lightning.modules.gan"]
    third_party["gan_lightning.core.noise"] = {"lightning"}
    assert "gan_lightning.core.noise imports Lightning" in layering_problems(GRAPH, third_party)


def test_no_import_cycle():
    assert cycles(GRAPH) == []
    assert cycles({"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}}) == [["a.x", "a.y", "a.z", "a.x"]]


def test_every_module_imports_on_its_own():
    """Each module imported with no other module of the package loaded before it."""
    code = (
        "import importlib, sys\n"
        f"names = {sorted(MODULES)!r}\n"
        "bad = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m == 'gan_lightning' or m.startswith('gan_lightning.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as e:\n"
        "        bad.append(f'{name}: {type(e).__name__}: {e}')\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(MODULES))
def test_files_stay_readable(name):
    assert len(MODULES[name].read_text().splitlines()) <= MAX_LINES
