"""Layering: recgym's modules import each other along one direction (no cycles, function-level imports
included), and benchmarks have one home (``recgym.bench``; ``benchmarks/`` holds thin entry points)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("perf_counter", "process_time", "time.time", "monotonic")
BENCHMARK_CLOCKS = ("perf_counter", "process_time")  # what timing code reads (sb3's episode "t" stamps time.time)


def module_files() -> dict[str, Path]:
    """Dotted name -> file of every module of the recgym package."""
    modules = {}
    for path in (ROOT / "recgym").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The recgym modules ``name`` imports anywhere in its file (module level, functions, methods):
    ``import a.b`` -> a.b; ``from a import b`` -> a.b if that is a module, else a."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in modules:
                    found.add(target)
                elif base in modules:
                    found.add(base)
    found.discard(name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == 1:
                return path[path.index(child):] + [child]
            if child not in state and (cycle := visit(child)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walker_sees_function_level_imports_and_finds_cycles(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from recgym.agents import flat\n    import recgym.evaluation\n")
    modules = {"recgym.agents.flat": source, "recgym.evaluation": source, "recgym.agents": source, "m": source}
    assert imported_modules("m", source, modules) == {"recgym.agents.flat", "recgym.evaluation"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_recgym_import_graph_is_acyclic():
    modules = module_files()
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    assert len(graph) > 30 and sum(map(len, graph.values())) > 50  # the walk really saw the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


#: Scripts that time ANOTHER commit's code beside this tree's (a ``git worktree`` of it imported in a
#: subprocess): they cannot be entry points into this tree's recgym.bench, which the old code lacks.
CROSS_COMMIT_SCRIPTS = ("bench_hrl_baseline.py",)


def test_benchmarks_are_thin_entry_points_into_recgym_bench():
    scripts = sorted((ROOT / "benchmarks").glob("*.py"))
    assert len(scripts) >= 3
    for name in CROSS_COMMIT_SCRIPTS:
        assert '"worktree", "add"' in (ROOT / "benchmarks" / name).read_text(), f"{name} times no other commit"
    for script in (path for path in scripts if path.name not in CROSS_COMMIT_SCRIPTS):
        text = script.read_text()
        assert "from recgym.bench import" in text, script.name
        assert not any(word in text for word in TIMING), f"{script.name} times things itself"
        assert len(text.splitlines()) <= 20, f"{script.name} is not a thin entry point"
    timed = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "recgym").rglob("*.py")
                   if any(word in path.read_text() for word in BENCHMARK_CLOCKS))
    assert timed == ["recgym/bench.py"]  # the one home of timing code
