"""bench/config_walk.py's counting on what a reader can check by hand: a synthetic walk (stays, re-entries,
climbs up), the reads of a small frozen dataclass (a bulk read counts once, at its caller), and the import
map of a tiny package (function-level and relative imports, a cycle, TYPE_CHECKING left out)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load():
    if "config_walk" not in sys.modules:  # dataclasses need the module registered while it runs
        spec = importlib.util.spec_from_file_location("config_walk", ROOT / "bench" / "config_walk.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["config_walk"] = module
        spec.loader.exec_module(module)
    return sys.modules["config_walk"]


cw = _load()


def test_walk_counts_stays_reentries_and_climbs_by_hand():
    # a imports b and c, b imports c: a is the top, c the bottom.
    closure = {"a.py": {"b.py", "c.py"}, "b.py": {"c.py"}, "c.py": set()}
    files = ["a.py", "a.py", "b.py", "a.py", "c.py", "b.py", "b.py"]
    reads = [cw.Read(f, i, "f", "x") for i, f in enumerate(files)]
    w = cw.walk(reads, closure)
    assert [(r["file"], r["reads"]) for r in w["walk"]] == [("a.py", 2), ("b.py", 1), ("a.py", 1), ("c.py", 1),
                                                             ("b.py", 2)]
    assert [r["move"] for r in w["walk"]] == ["start", "down", "up", "down", "up"]
    assert (w["reads"], w["stays"], w["files"], w["reentries"], w["climbs_up"]) == (7, 5, 3, 2, 2)
    assert w["reentries_per_file"] == {"a.py": 1, "b.py": 1}
    assert cw.walk(reads[:2], closure)["climbs_up"] == 0  # one stay: nothing to climb


def test_a_move_between_files_of_a_cycle_is_up_and_siblings_are_across():
    closure = {"a.py": {"b.py", "a.py"}, "b.py": {"a.py", "b.py"}, "s.py": set()}
    reads = [cw.Read(f, 1, "f", "x") for f in ("a.py", "b.py", "s.py")]
    assert [r["move"] for r in cw.walk(reads, closure)["walk"]] == ["start", "up (cycle)", "across"]


@dataclasses.dataclass(frozen=True)
class _Config:
    x: int = 1
    y: int = 2

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def test_tracer_records_direct_reads_and_counts_a_bulk_read_once_at_its_caller():
    tracer = cw.Tracer([_Config], Path(__file__).parent, [_Config.to_dict])
    cfg = _Config()
    with tracer.patched():
        cfg.x  # not traced yet: the tracer is off
        tracer.on = True
        cfg.x, cfg.y
        dataclasses.asdict(cfg)
        dataclasses.asdict(cfg)  # another call: another read
        cfg.to_dict()
        dataclasses.replace(cfg, x=3)
        tracer.on = False
    assert "__getattribute__" not in vars(_Config)  # restored
    assert [r.name for r in tracer.reads] == ["x", "y", "asdict()", "asdict()", "to_dict", "replace()"]
    assert {r.file for r in tracer.reads} == {"test_config_walk.py"}
    here = test_tracer_records_direct_reads_and_counts_a_bulk_read_once_at_its_caller.__name__
    assert {r.function for r in tracer.reads} == {here}
    assert cfg.x == 1 and not tracer.outside


def test_import_map_follows_function_level_and_relative_imports_and_finds_the_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg import a\n")
    (pkg / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "b.py").write_text("from pkg.sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub import d\n")  # re-export: no cycle
    (pkg / "sub" / "c.py").write_text("import pkg.a\nfrom typing import TYPE_CHECKING\n"
                                      "if TYPE_CHECKING:\n    import pkg.sub.d\n")
    (pkg / "sub" / "d.py").write_text("from ..sub import c\nimport pkg.sub\n")
    graph = cw.import_graph(pkg)
    assert graph == {"__init__.py": {"a.py"}, "a.py": {"b.py"}, "b.py": {"sub/c.py"},
                     "sub/__init__.py": {"sub/d.py"}, "sub/c.py": {"a.py"},
                     "sub/d.py": {"sub/__init__.py", "sub/c.py"}}
    assert cw.cycles(graph) == [["a.py", "b.py", "sub/c.py"]]
    closure = cw.reach(graph)
    assert "a.py" in closure["sub/c.py"] and "sub/c.py" in closure["a.py"]
    assert closure["__init__.py"] == {"a.py", "b.py", "sub/c.py"}
    assert closure["sub/d.py"] == {"sub/__init__.py", "sub/d.py", "sub/c.py", "a.py", "b.py"}
    assert cw.layer_cycles(graph) == [{"units": ["a", "b", "sub"],
                                       "imports": ["a.py -> b.py", "b.py -> sub/c.py", "sub/c.py -> a.py"]}]
    del graph["sub/c.py"]
    assert cw.cycles(graph) == [] and cw.layer_cycles(graph) == []
