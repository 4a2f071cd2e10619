"""The import graph of heatmapnet's modules, read from their source (every ``import heatmapnet.x``,
``from .x import``, ``from . import x``, at module level or inside a function)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "heatmapnet"

#: none is left (issue 24): multisource's evaluator gets each source's mode and codec from the build
#: layer that calls it, and a union split's records are read by data.build
KNOWN_CYCLES = []


def _modules():
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


def import_graph():
    """module -> the heatmapnet modules it imports (a package's own __init__ left out)."""
    modules, graph = _modules(), {}
    for name, (path, package) in modules.items():
        here = name.split(".") if package else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else node.module
                targets |= {base} | {f"{base}.{alias.name}" for alias in node.names}
        graph[name] = {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_scan_finds_a_cycle_it_is_shown():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    graph = import_graph()
    assert {"heatmapnet.build", "heatmapnet.optimizers", "heatmapnet.runlock"} <= graph["heatmapnet.preflight"]
    assert "heatmapnet.engine" not in graph["heatmapnet.preflight"] and "heatmapnet.preflight" in graph["heatmapnet.engine"]
    assert "heatmapnet.data.records" in graph["heatmapnet.data.synthetic"]  # from .records import


def test_no_import_cycle_among_heatmapnet_modules():
    assert sorted(cycles(import_graph()), key=sorted) == KNOWN_CYCLES
