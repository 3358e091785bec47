"""The package's shape (docs/architecture.md): imports go one way, from higher layers to lower
ones, with no circles, and no module grows past about 300 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "mtrl"

# lowest first; a module may import its own layer (without circles) and the layers below it
LAYERS = [
    ("mtrl.errors", "mtrl.registry", "mtrl.version"),
    ("mtrl.config",),
    ("mtrl.data",),
    ("mtrl.env",),
    ("mtrl.nn",),
    ("mtrl.curriculum",),
    ("mtrl.collect",),
    ("mtrl.algos",),
    ("mtrl.eval",),
    ("mtrl.run",),
    ("mtrl.rllib",),
    ("mtrl", "mtrl.cli", "mtrl.__main__"),
]
MAX_LINES = 300  # non-blank lines: the formatter's blank lines between definitions do not count


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def imports(path: Path, known: set[str]) -> set[str]:
    """The mtrl modules `path` imports anywhere (top level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from mtrl.nn import gram_schmidt` imports mtrl.nn; `from mtrl.nn import moore` imports mtrl.nn.moore
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            ]
        else:
            continue
        out |= {n for n in names if n in known}
    return out


def layer(name: str) -> int:
    best = None
    for i, members in enumerate(LAYERS):
        for m in members:
            if (name == m or name.startswith(m + ".")) and (best is None or len(m) > best[1]):
                best = (i, len(m))
    assert best is not None, f"module {name} is in no layer of tests/test_layout.py"
    return best[0]


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods)) - {name} for name, path in mods.items()}


def test_no_import_goes_up_a_layer():
    wrong = [
        f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
        for a, deps in graph().items()
        for b in deps
        if layer(b) > layer(a)
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_imports_have_no_circles():
    g = graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g[node]):
            if state.get(dep) == 1:
                circles.append(path[path.index(dep) :] + [dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for name in sorted(g):
        if name not in state:
            visit(name, [name])
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


def test_the_checks_see_a_circle_and_an_upward_import(tmp_path):
    """The two tests above can fail: on a made-up package they report both faults."""
    fake = {"mtrl.data.a": {"mtrl.data.b"}, "mtrl.data.b": {"mtrl.data.a", "mtrl.run.trainer"}}
    assert [b for a, deps in fake.items() for b in deps if layer(b) > layer(a)] == ["mtrl.run.trainer"]
    src = tmp_path / "m.py"
    src.write_text(
        "from mtrl.nn import moore\nimport mtrl.errors\n\ndef f():\n    from mtrl.run.trainer import train\n"
    )
    assert imports(src, {"mtrl.nn", "mtrl.nn.moore", "mtrl.errors", "mtrl.run.trainer"}) == {
        "mtrl.nn.moore",
        "mtrl.errors",
        "mtrl.run.trainer",
    }


def test_no_module_is_over_300_lines():
    long = {
        name: n
        for name, path in modules().items()
        if (n := sum(1 for line in path.read_text().splitlines() if line.strip())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} non-blank lines: {long}"


MAX_FUNCTION_LINES = 60
# functions allowed past MAX_FUNCTION_LINES, each with its reason
LONG_FUNCTIONS = {
    "mtrl.run.cli_args.parser": "the CLI's option table: one add_argument per option, read top to bottom",
}


def test_no_function_is_over_60_lines():
    """A function longer than a screen does several jobs; split it (or list it above with why)."""
    long = {}
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and f"{name}.{node.name}" not in LONG_FUNCTIONS:
                    long[f"{name}.{node.name}"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
    stale = [f for f in LONG_FUNCTIONS if f.rsplit(".", 1)[0] not in modules()]
    assert not stale, f"LONG_FUNCTIONS names modules that no longer exist: {stale}"


def test_only_the_guard_writes_its_counters():
    """NonFiniteGuard's fields change through its own methods (finish, skip, restore) only."""
    import re

    writes = re.compile(r"guard\.(streak|skipped|limit)\s*[+-]?=[^=]")
    found = [
        f"{name}:{i}"
        for name, path in modules().items()
        if name != "mtrl.algos.base"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if writes.search(line)
    ]
    assert not found, f"NonFiniteGuard fields written outside it: {found}"
