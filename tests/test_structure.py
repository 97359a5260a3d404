"""The shape of the code: no import cycles, and the layers the README describes."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = {p.stem: p for p in ROOT.glob("*.py")}


def project_imports(module: str) -> set[str]:
    """Project modules that ``module`` imports anywhere in its file (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return (found & MODULES.keys()) - {module}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    graph = {m: project_imports(m) for m in MODULES}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_layers():
    # The data layer and the metrics never need torch-side or study code.
    for module in ("ground_truth", "data_files", "data_cache", "datasets", "standins", "metrics", "config", "utils"):
        assert project_imports(module) <= {"ground_truth", "data_files", "data_cache", "standins", "utils"}, module
    # The launcher is generic: each study hands it what it needs.
    assert project_imports("launcher") <= {"runs", "utils"}
    # Neither model family's study module leans on the other's.
    assert "mine_study" not in project_imports("study") and "study" not in project_imports("mine_study")
    assert "training" not in project_imports("mine_study")        # one training loop per family
