"""The shape of the code: the root holds the faces and the entry scripts, the machinery
lives in lbvae/, no file is longer than a reader can hold, no import cycles, and the
layers the README's layout section describes."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACES = {"config", "datasets", "models", "losses", "metrics", "utils", "visualizations"}
ENTRIES = {"main_beta", "main_lambda", "main_mine", "main_linear"}
MAX_LINES = 700
README_MAX_LINES = 200          # a landing page: the detail lives in docs/
ENTRY_MAX_LINES = 30


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Every project module by its dotted name: the root's files and the lbvae package's."""
    found = {p.stem: p for p in root.glob("*.py")}
    for p in (root / "lbvae").rglob("*.py"):
        parts = p.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return found


def project_imports(path: Path, modules) -> set[str]:
    """Project modules the file at ``path`` imports anywhere (also inside functions):
    ``from lbvae.data import files`` names the module lbvae.data.files."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                      for alias in node.names}
    return found & set(modules)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = module_files(root)
    return {name: project_imports(path, modules) - {name} for name, path in modules.items()}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


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


def long_files(root: Path = ROOT, limit: int = MAX_LINES) -> list[str]:
    """Python files outside tests/ with more than ``limit`` lines, as 'path: lines'."""
    out = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root)
        if rel.parts[0] in ("tests", ".git"):
            continue
        if (n := len(p.read_text().splitlines())) > limit:
            out.append(f"{rel}: {n}")
    return out


def readme_doc_links(readme: Path) -> list[str]:
    """Relative links of the README into docs/, without their #anchors."""
    return [m.split("#")[0] for m in re.findall(r"\]\((docs/[^)\s]+)\)", readme.read_text())]


def dead_links(page: Path) -> list[str]:
    """Relative links of a Markdown page (files, not #anchors or web addresses) whose target is missing."""
    links = [m.split("#")[0] for m in re.findall(r"\]\(([^)\s]+)\)", page.read_text())]
    return [link for link in links if link and not link.startswith(("http:", "https:", "mailto:"))
            and not (page.parent / link).exists()]


GRAPH = import_graph()


# The modules the layer rules name.
runs, launcher = "lbvae.pipeline.runs", "lbvae.pipeline.launcher"
study, training, engine = "lbvae.pipeline.study", "lbvae.pipeline.training", "lbvae.pipeline.engine"
mine_study, solver = "lbvae.mine.study", "lbvae.linear.solver"
MINE_FAMILY = {"lbvae.mine.study", "lbvae.mine.report", "lbvae.mine.evidence"}


def test_root_holds_the_faces_and_entry_scripts_only():
    at_root = {p.stem for p in ROOT.glob("*.py")}
    assert at_root == FACES | ENTRIES, \
        f"unexpected at the root (move it into lbvae/): {sorted(at_root - FACES - ENTRIES)}; " \
        f"missing: {sorted(FACES | ENTRIES - at_root)}"


def test_no_file_over_the_line_limit():
    assert long_files() == []


def test_entry_scripts_stay_thin():
    for name in ENTRIES:
        lines = (ROOT / f"{name}.py").read_text().splitlines()
        assert len(lines) <= ENTRY_MAX_LINES, f"{name}.py has {len(lines)} lines: move its work into lbvae/"


def test_no_import_cycles():
    assert find_cycle(GRAPH) is None, f"import cycle: {' -> '.join(find_cycle(GRAPH))}"


def test_readme_is_a_landing_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move detail into docs/"


def test_every_docs_link_of_the_readme_resolves():
    links = readme_doc_links(ROOT / "README.md")
    assert links, "the README links into docs/"
    assert [link for link in links if not (ROOT / link).exists()] == []


def test_every_link_of_the_docs_resolves():
    assert {page.name: dead_links(page) for page in (ROOT / "docs").glob("*.md") if dead_links(page)} == {}


def test_layers():
    data = {m for m in GRAPH if m.startswith("lbvae.data")}
    pure = {"utils", "lbvae.settings", "lbvae.objectives"} | data | {m for m in GRAPH if m.startswith("lbvae.metrics")}
    # The data layer, the settings and the metrics never need torch-side or study code.
    for module in ({"config", "metrics", "utils", "datasets"} | pure) & GRAPH.keys():
        assert reachable(GRAPH, module) <= pure, (module, sorted(reachable(GRAPH, module) - pure))
    # The launcher is generic: each study hands it what it needs.
    assert GRAPH[launcher] <= {runs, "utils"}, sorted(GRAPH[launcher])
    # Neither model family's study leans on the other's; one training loop per family.
    assert not reachable(GRAPH, study) & MINE_FAMILY, sorted(reachable(GRAPH, study) & MINE_FAMILY)
    assert not reachable(GRAPH, mine_study) & {study, training, engine}, sorted(reachable(GRAPH, mine_study))
    # The linear theory is numbers only: no networks, no runs, no other family.
    linear = {m for m in GRAPH if m.startswith("lbvae.linear")} | {"main_linear"}
    for module in linear & GRAPH.keys():
        assert reachable(GRAPH, module) <= linear | {"utils", solver}, (module, sorted(reachable(GRAPH, module)))


# --- the checks above can fail: each sees its rule broken in a tree written here --------------
def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_import_graph_resolves_package_imports(tmp_path):
    (tmp_path / "lbvae" / "data").mkdir(parents=True)
    for init in ("lbvae/__init__.py", "lbvae/data/__init__.py"):
        (tmp_path / init).write_text("")
    (tmp_path / "lbvae" / "data" / "files.py").write_text("import utils\n")
    (tmp_path / "utils.py").write_text("def f():\n    from lbvae.data import files\n")
    (tmp_path / "config.py").write_text("from lbvae.data.files import x\nimport numpy\n")
    graph = import_graph(tmp_path)
    assert graph["utils"] == {"lbvae.data.files"} and graph["config"] == {"lbvae.data.files"}
    assert find_cycle(graph) == ["lbvae.data.files", "utils", "lbvae.data.files"]


def test_long_files_and_dead_links_are_seen(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_long.py").write_text("x = 1\n" * 20)
    (tmp_path / "long.py").write_text("x = 1\n" * 11)
    (tmp_path / "short.py").write_text("x = 1\n" * 10)
    assert long_files(tmp_path, limit=10) == ["long.py: 11"]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "here.md").write_text("")
    readme = tmp_path / "README.md"
    readme.write_text("[a](docs/here.md#part) [b](docs/gone.md) [c](https://x.org/docs/y)")
    assert readme_doc_links(readme) == ["docs/here.md", "docs/gone.md"]
    assert dead_links(readme) == ["docs/gone.md"]
