"""Rules of the code's shape, checked on the source (comments and docstrings never count):

- the batching knobs are read only in ``config/`` (which holds their resolver, ``config/limits.py``) and inside the
  standalone engine (``engine/``), whose own ``EngineConfig`` carries the resolved limits under the same names;
- the engine stands on its own: it imports torch, triton, numpy, the standard library and ``errors`` only;
- ``NS_PER_S`` (nanoseconds per second) and the shared file names are defined once;
- the engine drivers (``backends/``) sit below real-bench and the profiler: they import neither, and the
  simulator side never imports the bench.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "gpu_simulate_test"
KNOBS = ("max_batch_tokens", "max_requests_per_batch")
READERS = ("getattr", "hasattr", "get", "pop", "setdefault", "attrgetter", "itemgetter", "select")
NS_PER_S_VALUE = 1_000_000_000
FILE_NAMES = ("run_meta.json", "workload_meta.json", "profile_meta.json", "comparison_meta.json", "sweep_meta.json", "summary.md")


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of a module, its classes and functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def knob_reads(source: str, knob: str) -> list[int]:
    """Lines that read (or write) ``knob`` on anything: ``x.knob``, ``x["knob"]``, ``getattr(x, "knob")``,
    ``d.get("knob")``, ``attrgetter("knob")``, ... A keyword argument ``knob=`` to another library is not a read."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == knob:
            lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == knob:
            lines.append(node.lineno)
        elif isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name in READERS and any(isinstance(a, ast.Constant) and a.value == knob for a in node.args):
                lines.append(node.lineno)
    return sorted(lines)


def constant_definitions(source: str, name: str, value: float) -> list[int]:
    """Lines that assign ``name``, or assign ``value`` (the constant itself, under any name)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named = any(isinstance(t, ast.Name) and t.id == name for t in targets)
            literal = isinstance(node.value, ast.Constant) and isinstance(node.value.value, (int, float)) \
                and not isinstance(node.value.value, bool) and node.value.value == value
            if named or literal:
                lines.append(node.lineno)
    return sorted(lines)


def string_literals(source: str, values: tuple[str, ...]) -> list[tuple[int, str]]:
    """``(line, value)`` of every string constant equal to one of ``values``, docstrings left out."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    return sorted((n.lineno, n.value) for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and n.value in values and id(n) not in docs)


def imports(source: str) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def _rel(path: Path) -> str:
    return str(path.relative_to(SRC))


@pytest.mark.parametrize("knob", KNOBS)
def test_a_knob_is_read_only_in_config(knob: str) -> None:
    offenders = [f"{_rel(p)}:{line}" for p in _sources() if p.parent.name != "config" and _rel(p).split("/")[0] != "engine"
                 for line in knob_reads(p.read_text(), knob)]
    assert offenders == [], f"backend.{knob} is read outside config/ (use config.limits.resolve_limits): {offenders}"


def test_ns_per_s_is_defined_once() -> None:
    found = [f"{_rel(p)}:{line}" for p in _sources() for line in constant_definitions(p.read_text(), "NS_PER_S", NS_PER_S_VALUE)]
    assert [f.split(":")[0] for f in found] == ["io/units.py"], found


def test_shared_file_names_are_defined_once() -> None:
    found = sorted((value, _rel(p)) for p in _sources() for _, value in string_literals(p.read_text(), FILE_NAMES))
    assert found == sorted((name, "io/outputs.py") for name in FILE_NAMES), found


def test_drivers_sit_below_the_bench_and_the_profiler() -> None:
    drivers = {p.name for p in (SRC / "backends").glob("*.py")}
    assert {"hf_generate.py", "hf_continuous.py", "sarathi.py", "native.py"} <= drivers, drivers
    for path in (SRC / "backends").glob("*.py"):
        upward = {m for m in imports(path.read_text()) if m.startswith(("gpu_simulate_test.real_bench", "gpu_simulate_test.vidur_ext"))}
        assert not upward, f"{_rel(path)} imports {sorted(upward)}"
    for path in (SRC / "vidur_ext").rglob("*.py"):
        bench = {m for m in imports(path.read_text()) if m.startswith("gpu_simulate_test.real_bench")}
        assert not bench, f"{_rel(path)} imports {sorted(bench)}: the simulator side reaches the engines through backends/"


def test_the_engine_stands_on_its_own() -> None:
    """``engine/`` is driven by real-bench and vidur-profile alike, so it may not reach back into any of them."""
    for path in (SRC / "engine").rglob("*.py"):
        ours = {m for m in imports(path.read_text()) if m.startswith("gpu_simulate_test")}
        foreign = {m for m in ours if not m.startswith(("gpu_simulate_test.engine", "gpu_simulate_test.errors"))}
        assert not foreign, f"{_rel(path)} imports {sorted(foreign)}: the engine imports only itself and errors"


def test_the_scanners_catch_what_they_are_for() -> None:
    """Each rule's scanner flags every form it is meant to (so an empty result above means something)."""
    reads = '''
"""a docstring naming max_batch_tokens is fine"""
a = cfg.max_batch_tokens                      # 3
b = cfg["max_batch_tokens"]                   # 4
c = getattr(cfg, "max_batch_tokens", None)    # 5
d = meta.get("max_batch_tokens")              # 6
e = attrgetter("max_batch_tokens")(cfg)       # 7
cfg.max_batch_tokens = 3                      # 8
ok = Engine(max_batch_tokens=limits.token_budget)
ok2 = {"max_batch_tokens": 1}
'''
    assert knob_reads(reads, "max_batch_tokens") == [3, 4, 5, 6, 7, 8]
    consts = "NS_PER_S = 10\nNS = 1e9\nMS = 1_000_000\nx: int = 1_000_000_000\nFLAG = True\n"
    assert constant_definitions(consts, "NS_PER_S", NS_PER_S_VALUE) == [1, 2, 4]
    names = '"""summary.md in a docstring"""\npath = root / "summary.md"\nmsg = "see summary.md"\n'
    assert string_literals(names, FILE_NAMES) == [(2, "summary.md")]
    assert imports("from gpu_simulate_test.real_bench.run import x\nimport gpu_simulate_test.vidur_ext\n") == {
        "gpu_simulate_test.real_bench.run", "gpu_simulate_test.vidur_ext"}
