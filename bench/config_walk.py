#!/usr/bin/env python
"""The walk of the config through one training run (issue 27's first target): how often a reader of
the code has to move between files, and back, to follow ``cfg`` from the training entry.

    python bench/config_walk.py [--out DIR] [--entry train|main] [--json] [-- TRAIN FLAGS]

Runs one short real training run (``--dataset ring --max_epochs 1 --max_steps 20 --logger csv
--metric_every_n_epochs 0`` unless flags follow ``--``) through ``gan_lightning.runs.training.main``,
and records, in order, every attribute read of a config object (a ``TrainConfig`` or a subclass:
``ResolvedConfig``) made by code in ``gan_lightning/``. Nothing in the package is changed: the classes'
``__getattribute__`` is patched for the duration of the run and restored after it.

Flags:
    --out DIR      keep the training run (DIR/run) and write DIR/config_walk.json; default: a
                   temporary folder, removed at the end.
    --entry E      where the walk starts: ``train`` (default; the issue's baseline walked ``cfg`` from
                   ``runs/training.py:train``, so the reads of parsing are left out) or ``main``
                   (parsing included).
    --json         print the JSON object instead of the tables.
    -- FLAGS       the training flags, replacing the defaults above (``--out_dir`` is added).

How it is measured (the tools: ``ast`` for the import map, a patched ``__getattribute__`` and
``sys._getframe`` for the reads). These definitions are this benchmark's reading of the issue's words:

- *read*: one attribute read of a config instance whose reading frame is a file of ``gan_lightning/``
  (a field, or a method such as ``to_dict``). Reads a bulk call makes for its caller count once, at
  the caller: ``cfg.to_dict()`` is one read (the lookup of ``to_dict``), and ``dataclasses.asdict``,
  ``replace``, ``copy`` or a dataclass-generated ``__eq__``/``__repr__``/``__hash__`` called from the
  package count one read per call. Reads by code outside the package (Lightning, yaml) are not part of
  the walk; they are counted apart ("outside").
- *stay*: a maximal run of consecutive reads in one file.
- *re-entry*: a stay in a file that already had an earlier stay.
- *file B imports file A*: directly or transitively, by any ``import`` in B (module level or inside a
  function; not under ``if TYPE_CHECKING``); ``from P import x`` imports P.x where that is a module,
  else P (so a package's ``__init__`` counts where its names are imported from it).
- *climb back up* (an arrow up): a move between consecutive stays from file A to a file B that imports A,
  i.e. a callee handing control back to a caller's layer. A move to a file that A imports is *down*;
  neither: *across*; both (an import cycle): counted as up, and listed as a cycle.
- *cycle*: a strongly connected set of files in the import graph, where a package's ``__init__``
  re-exporting its own modules is not an edge (as in tests/test_layout.py).
- *layer cycle* (reported beside the target, not part of it): top-level units (``runs``, ``build``,
  ``config``, ...) that import each other through different files, e.g. runs/training.py -> build.py ->
  runs/loggers.py before the Trainer's parts moved to trainer/; the other reading of the issue's "arrow
  up", on the import map alone.

With these definitions a walk that resolves and then builds climbs at least once (config/resolve.py's
reads, then a builder's, and build.py imports config), so "no arrow up" can be read on the walk as
"no climb but that one", or on the import map as "no layer cycle"; both are printed.

Limits: reads in DataLoader worker processes or DDP ranks other than this process are not seen (the
default run has neither); a value copied out of the config (``lr = cfg.lr``) and used later is one read,
where it was copied. The walk follows the config object only: a builder that passes ``cfg.lr`` on as a
number is where the walk ends for that value.

Calibration: at 401cdbe (before issue 27's step 1) this measures 24 stays in 4 files, 20 re-entries,
12 climbs up with the default flags; the issue's baseline (43 / 16 files / 27 / 14) was taken with another
tool whose definitions it does not give, so compare this script's numbers with each other, not with it.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

DEFAULT_TRAIN_FLAGS = ("--dataset", "ring", "--max_epochs", "1", "--max_steps", "20", "--logger", "csv",
                       "--metric_every_n_epochs", "0", "--seed", "0", "--run_name", "walk")
PASS_THROUGH_FILES = ("dataclasses.py", "copy.py", "copyreg.py", "<string>")  # bulk readers: one read at the caller


# ---------------------------------------------------------------------------------------------- import map

def _module_files(package: Path) -> dict[str, str]:
    """Dotted module name -> file relative to ``package`` (``gan_lightning.runs.training`` -> runs/training.py)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path.relative_to(package).as_posix()
    return found


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import under ``node``, functions included, except those under ``if TYPE_CHECKING``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            yield from (n for orelse in child.orelse for n in _import_nodes(ast.Module([orelse], [])))
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from _import_nodes(child)


def import_graph(package: Path) -> dict[str, set[str]]:
    """File -> the package's files it imports directly (files relative to ``package``)."""
    modules = _module_files(package)
    graph: dict[str, set[str]] = {}
    for name, rel in modules.items():
        is_init = rel.endswith("__init__.py")
        targets: set[str] = set()
        for node in _import_nodes(ast.parse((package / rel).read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
                continue
            base = node.module or ""
            if node.level:  # relative: from the module's own package, up level - 1 packages
                anchor = name.split(".") if is_init else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # a module where the name is one, else the module it comes from
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[rel] = {modules[t] for t in targets if t in modules and modules[t] != rel}
    return graph


def reach(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """File -> every file it imports, directly or transitively (itself too where it is on a cycle)."""
    closed: dict[str, set[str]] = {}
    for start in graph:
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            f = todo.pop()
            if f not in seen:
                seen.add(f)
                todo.extend(graph.get(f, ()))
        closed[start] = seen
    return closed


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected sets of more than one file (or a file importing itself),
    leaving out the edges from a package's ``__init__`` to its own modules."""
    def edges(f: str) -> set[str]:
        own = f[: -len("__init__.py")] if f.endswith("__init__.py") else None
        return {t for t in graph.get(f, ()) if not (own is not None and t.startswith(own))}

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(f: str) -> None:  # Tarjan
        index[f] = low[f] = len(index)
        stack.append(f)
        for t in sorted(edges(f)):
            if t not in index:
                visit(t)
                low[f] = min(low[f], low[t])
            elif t in stack:
                low[f] = min(low[f], index[t])
        if low[f] == index[f]:
            group = []
            while True:
                t = stack.pop()
                group.append(t)
                if t == f:
                    break
            if len(group) > 1 or f in edges(f):
                found.append(sorted(group))

    for f in sorted(graph):
        if f not in index:
            visit(f)
    return found


def layer_cycles(graph: dict[str, set[str]]) -> list[dict[str, Any]]:
    """Cycles between the package's top-level units (a subpackage, or a top-level module such as
    build.py), each with the file imports that make it: where a unit imports one that imports it back,
    one of those arrows points up (issue 27: "runs/ stands on two floors")."""
    def unit(f: str) -> str:
        return f.split("/")[0].removesuffix(".py")

    units: dict[str, set[str]] = {}
    for f, targets in graph.items():
        units.setdefault(unit(f), set()).update(unit(t) for t in targets if unit(t) != unit(f))
    return [{"units": group, "imports": sorted(f"{f} -> {t}" for f, targets in graph.items() for t in targets
                                               if unit(f) != unit(t) and {unit(f), unit(t)} <= set(group))}
            for group in cycles(units)]


# ---------------------------------------------------------------------------------------------- the trace

@dataclasses.dataclass
class Read:
    file: str  # relative to the package
    line: int
    function: str
    name: str  # the attribute, or "asdict()"-style for a bulk read


def _codes(codes: Iterable[Any]) -> Iterator[Any]:
    """The code objects and those nested in them (a comprehension runs in a frame of its own)."""
    for code in codes:
        yield code
        yield from _codes(c for c in code.co_consts if hasattr(c, "co_code"))


class Tracer:
    """Records attribute reads of instances of ``classes`` made from files under ``package``."""

    def __init__(self, classes: Sequence[type], package: Path, methods: Iterable[Any] = ()):
        self.classes = list(classes)
        self.package = str(package.resolve()) + os.sep
        self.reads: list[Read] = []
        self.outside: Counter[str] = Counter()
        self.on = False
        self._skip = set(_codes(m.__code__ for m in methods))  # methods whose reads count at their caller (to_dict)
        self._last_bulk: tuple[Any, int] | None = None
        self._names = {f.name for c in self.classes for f in dataclasses.fields(c)}
        self._names |= {k for c in self.classes for k in vars(c) if not k.startswith("__")}

    def _record(self, name: str) -> None:
        frame = sys._getframe(2)
        bulk = ""
        while frame is not None:
            if frame.f_code in self._skip:
                return  # counted where the method was looked up
            path = frame.f_code.co_filename
            if not path.endswith(PASS_THROUGH_FILES):
                break
            bulk = frame.f_code.co_name
            frame = frame.f_back
        if frame is None:
            return
        path = frame.f_code.co_filename
        if not path.startswith(self.package):
            self.outside[f"{Path(path).name}:{name}"] += 1
            return
        if bulk:
            key = (frame, frame.f_lasti)
            if self._last_bulk is not None and self._last_bulk[0] is frame and self._last_bulk[1] == key[1]:
                return  # the same bulk call, still reading
            self._last_bulk = key
            name = f"{bulk}()"
        else:
            self._last_bulk = None
        self.reads.append(Read(path[len(self.package):].replace(os.sep, "/"), frame.f_lineno,
                               frame.f_code.co_name, name))

    @contextlib.contextmanager
    def patched(self) -> Iterator["Tracer"]:
        """Patch ``__getattribute__`` of the classes for the duration; reads count while ``self.on``."""
        tracer, names = self, self._names

        def traced(obj: Any, name: str) -> Any:
            value = object.__getattribute__(obj, name)
            if tracer.on and name in names:
                tracer.on = False  # nothing the recorder does may count
                try:
                    tracer._record(name)
                finally:
                    tracer.on = True
            return value

        saved = {c: c.__dict__.get("__getattribute__") for c in self.classes}
        for c in self.classes:
            c.__getattribute__ = traced
        try:
            yield self
        finally:
            for c, old in saved.items():
                if old is None:
                    del c.__getattribute__
                else:
                    c.__getattribute__ = old


# ---------------------------------------------------------------------------------------------- counting

def stays(reads: Sequence[Read]) -> list[list[Read]]:
    """Maximal runs of consecutive reads in one file."""
    runs: list[list[Read]] = []
    for r in reads:
        if runs and runs[-1][0].file == r.file:
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs


def walk(reads: Sequence[Read], closure: dict[str, set[str]]) -> dict[str, Any]:
    """The walk's counts and its ordered stays, each with the move that led to it."""
    groups = stays(reads)
    seen: set[str] = set()
    rows, reentries, entered = [], Counter(), Counter()
    for i, group in enumerate(groups):
        f = group[0].file
        move = "start"
        if i:
            a = groups[i - 1][0].file
            up, down = a in closure.get(f, ()), f in closure.get(a, ())
            move = "up (cycle)" if up and down else "up" if up else "down" if down else "across"
        again = f in seen
        seen.add(f)
        entered[f] += 1
        reentries[f] += again
        rows.append({"file": f, "reads": len(group), "line": group[0].line, "function": group[0].function,
                     "move": move, "reentry": again, "names": [r.name for r in group]})
    return {
        "reads": len(reads),
        "stays": len(groups),
        "files": len(seen),
        "reentries": sum(reentries.values()),
        "climbs_up": sum(r["move"].startswith("up") for r in rows),
        "stays_per_file": dict(entered.most_common()),
        "reentries_per_file": {f: n for f, n in reentries.most_common() if n},
        "walk": rows,
    }


# ---------------------------------------------------------------------------------------------- the run

def run_training(entry: str, flags: Sequence[str], out_dir: Path) -> Tracer:
    """One training run through ``runs.training.main`` with the config's reads traced."""
    import gan_lightning
    from gan_lightning.config import TrainConfig
    from gan_lightning.runs import training

    classes, todo = [], [TrainConfig]
    while todo:
        c = todo.pop()
        classes.append(c)
        todo.extend(c.__subclasses__())
    methods = [m for c in classes for k, m in vars(c).items() if k == "to_dict" and callable(m)]
    tracer = Tracer(classes, Path(gan_lightning.__file__).parent, methods)
    argv = [*flags, "--out_dir", str(out_dir)]
    original = training.train

    def traced_train(*args: Any, **kwargs: Any) -> Any:
        tracer.on = True
        try:
            return original(*args, **kwargs)
        finally:
            tracer.on = False

    with tracer.patched():
        if entry == "train":
            training.train = traced_train  # main looks train up in its module: the walk starts there
        else:
            tracer.on = True
        try:
            code = training.main(argv)
        finally:
            training.train = original
            tracer.on = False
    if code:
        raise SystemExit(f"error: the training run exited {code}")
    return tracer


def report(result: dict[str, Any]) -> str:
    w, lines = result["walk"], []
    lines.append(f"config walk at {result['commit']} from {result['entry']} ({' '.join(result['train_flags'])})")
    lines.append(f"import map: {result['graph']['files']} files, {result['graph']['edges']} imports, "
                 f"cycles: {len(result['graph']['cycles'])}"
                 + "".join(f"\n  cycle: {' -> '.join(c)}" for c in result["graph"]["cycles"]))
    for c in result["graph"]["layer_cycles"]:
        lines.append(f"layer cycle: {' <-> '.join(c['units'])}: " + ", ".join(c["imports"]))
    lines.append("\nstays (file, reads, first line, move from the stay before; * = re-entry):")
    for i, row in enumerate(w["walk"], 1):
        names = ", ".join(row["names"][:6]) + (", ..." if len(row["names"]) > 6 else "")
        lines.append(f"{i:3d}{'*' if row['reentry'] else ' '} {row['file']:<34} {row['reads']:4d}  "
                     f"line {row['line']:<4d} {row['function']:<22} {row['move']:<10} {names}")
    lines.append("\nper file: stays (re-entries)")
    for f, n in w["stays_per_file"].items():
        lines.append(f"  {f:<34} {n:3d} ({w['reentries_per_file'].get(f, 0)})")
    if result["outside"]:
        lines.append(f"\nreads by code outside the package (not in the walk): {sum(result['outside'].values())}")
    lines.append(f"\nreads {w['reads']}; stays {w['stays']} in {w['files']} files; re-entries {w['reentries']}; "
                 f"climbs up {w['climbs_up']}; cycles {len(result['graph']['cycles'])}; "
                 f"layer cycles {len(result['graph']['layer_cycles'])}")
    lines.append("target (issue 27): stays <= 25, re-entries <= 8, climbs up 0, cycles 0")
    return "\n".join(lines)


def _commit(where: Path) -> str:
    import subprocess

    done = subprocess.run(["git", "-C", str(where), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_flags = DEFAULT_TRAIN_FLAGS
    if "--" in argv:
        cut = argv.index("--")
        argv, train_flags = argv[:cut], tuple(argv[cut + 1:])
    parser = argparse.ArgumentParser(description="The walk of the config through one training run (issue 27).",
                                     epilog="Training flags follow --; see the module docstring for the definitions.")
    parser.add_argument("--out", type=Path, default=None, help="keep the run (OUT/run) and write OUT/config_walk.json")
    parser.add_argument("--entry", choices=("train", "main"), default="train",
                        help="start the walk at runs.training.train (default) or main (parsing included)")
    parser.add_argument("--json", action="store_true", help="print the JSON object instead of the tables")
    args = parser.parse_args(argv)
    for key, value in {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}.items():
        os.environ.setdefault(key, value)

    import gan_lightning

    package = Path(gan_lightning.__file__).resolve().parent
    graph = import_graph(package)
    closure = reach(graph)
    with contextlib.ExitStack() as stack:
        out = args.out or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="config_walk-")))
        out.mkdir(parents=True, exist_ok=True)
        tracer = run_training(args.entry, train_flags, out / "run")
        result = {
            "commit": _commit(package.parent), "entry": args.entry, "train_flags": list(train_flags),
            "graph": {"files": len(graph), "edges": sum(map(len, graph.values())), "cycles": cycles(graph),
                      "layer_cycles": layer_cycles(graph)},
            "walk": walk(tracer.reads, closure), "outside": dict(tracer.outside.most_common()),
        }
        if args.out:
            (out / "config_walk.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
