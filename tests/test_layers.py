"""The declared import contract, checked on the source: layers, no cycle, no private name
across modules. Every import counts, the lazy ones inside functions too.

    cli  ->  orchestration (runner, bench, plan)  ->  backends  ->  training (protocol, sequential, batched)
         ->  foundation (settings, device, results, config, data, store, stats, architectures)
    cli  ->  presentation (report, plots, progress)  ->  foundation without models

Backends know nothing of the harness but their own interface: they receive the work.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LAYERS = {  # a module may import its own layer and the layers below it
    "cli": 5,
    "orchestration": 4,
    "presentation": 4,
    "backends": 3,
    "training": 2,
    "foundation": 1,
}
GROUPS = {
    "harness.cli": "cli",
    "harness.runner": "orchestration",
    "harness.bench": "orchestration",
    "harness.plan": "orchestration",
    "harness.api": "orchestration",
    "harness.report": "presentation",
    "harness.plots": "presentation",
    "harness.progress": "presentation",
    "harness.backends": "backends",
    "harness.training": "training",
    "harness.settings": "foundation",
    "harness.device": "foundation",
    "harness.results": "foundation",
    "harness.config": "foundation",
    "harness.data": "foundation",
    "harness.store": "foundation",
    "harness.stats": "foundation",
    "harness": "foundation",
    "architectures": "foundation",
    "harness.tasks": "foundation",
    "minidl": "foundation",
}
# presentation reads DataFrames: it never builds models or trains
PRESENTATION_MAY_IMPORT = {"harness", "harness.settings", "harness.results", "harness.config", "harness.stats", "harness.report", "harness.plots", "harness.progress", "harness.tasks"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def group(module: str) -> str:
    for prefix in sorted(GROUPS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return GROUPS[prefix]
    raise AssertionError(f"{module} belongs to no layer: add it to GROUPS in {__file__}")


def imports(path: Path):
    """(imported module, names imported from it, line) for every project import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [alias.name for alias in node.names]
            modules = {f"{base}.{name}" for name in names if (ROOT / Path(*f"{base}.{name}".split("."))).with_suffix(".py").exists()
                       or (ROOT / Path(*f"{base}.{name}".split("."))).is_dir()}
            found.append((base, [n for n in names if f"{base}.{n}" not in modules], node.lineno))
            found += [(module, [], node.lineno) for module in modules]
    return [(module, names, line) for module, names, line in found if module.split(".")[0] in ("harness", "architectures")]


SOURCES = sorted(p for folder in ("harness", "architectures", "minidl") for p in (ROOT / folder).rglob("*.py"))
GRAPH = {module_name(path): imports(path) for path in SOURCES}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers_and_keep_private_names_private(path):
    here = module_name(path)
    problems = []
    for module, names, line in GRAPH[here]:
        if group(module) != group(here) and LAYERS[group(module)] > LAYERS[group(here)]:
            problems.append(f"line {line}: {here} ({group(here)}) imports {module} ({group(module)}), a layer above it")
        if group(here) == "presentation" and module not in PRESENTATION_MAY_IMPORT:
            problems.append(f"line {line}: presentation module {here} imports {module}")
        if group(here) == "backends" and group(module) != "backends":
            problems.append(f"line {line}: backend {here} imports {module}: backends receive the work instead")
        private = [name for name in names if name.startswith("_") and not name.startswith("__")]
        if private and module != here:
            problems.append(f"line {line}: {here} imports private {', '.join(private)} from {module}")
    assert not problems, "\n".join(problems)


def test_no_import_cycle():
    edges = {module: {target for target, _, _ in found if target in GRAPH and target != module}
             for module, found in GRAPH.items()}
    for module in edges:  # importing a package imports its __init__ first: not a cycle of its own
        edges[module] = {t for t in edges[module] if not module.startswith(t + ".")}
    state: dict[str, int] = {}

    def visit(module, trail):
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(target):], target]))
            if target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])


def test_training_functions_stay_short():
    """The hot path reads as a protocol and two short drivers: no function over 50 lines."""
    long = []
    for path in sorted((ROOT / "harness" / "training").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 50:
                long.append(f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, "\n".join(long)
