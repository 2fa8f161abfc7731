"""The declared import contract, checked on the source: layers, no cycle, no private name across
modules, generic modules that name no task, short drivers and commands. Every import counts,
the lazy ones inside functions too, and so does a module named in a string (a registry's
`module:attribute` reference, `import_module("...")`): naming what is above is knowing it.

    cli -> orchestration (api, runner, bench, estimate) -> presentation (report, plots, progress)
        -> backends -> study (config, studies, store, stats) -> tasks (harness.tasks and each task's package)
        -> training (the protocol) -> foundation (settings, registry, results, device, mnist,
           plugins, errors; each task's settings; architectures, minidl)

A task's package is a slice of its own: its declaration (its package's __init__) and its code sit
at the tasks layer, its settings at the foundation (the model registry derives its options from
them). Backends know nothing of the harness but their own interface and the generic registry:
they receive the work. Presentation reads DataFrames: it never builds models or trains.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LAYERS = {  # a module may import its own layer and the layers below it
    "cli": 8,
    "orchestration": 7,
    "presentation": 6,
    "backends": 5,
    "study": 4,
    "tasks": 3,
    "training": 2,
    "foundation": 1,
}
GROUPS = {  # the longest prefix decides
    "harness.cli": "cli",
    "harness.api": "orchestration",
    "harness.runner": "orchestration",
    "harness.bench": "orchestration",
    "harness.estimate": "orchestration",
    "harness.report": "presentation",
    "harness.plots": "presentation",
    "harness.progress": "presentation",
    "harness.backends": "backends",
    "harness.config": "study",
    "harness.store": "study",
    "harness.studies": "study",
    "harness.stats": "study",
    "harness.tasks": "tasks",
    "harness.tasks.pairs.settings": "foundation",
    "harness.tasks.disk.settings": "foundation",
    "harness.training": "training",
    "harness": "foundation",
    "harness.settings": "foundation",
    "harness.registry": "foundation",
    "harness.results": "foundation",
    "harness.device": "foundation",
    "harness.mnist": "foundation",
    "harness.plugins": "foundation",
    "harness.errors": "foundation",
    "architectures": "foundation",
    "minidl": "foundation",
}
BACKENDS_MAY_IMPORT = {"harness.registry", "harness.errors"}  # besides the backends themselves
# presentation reads DataFrames: it never builds models or trains
PRESENTATION_MAY_IMPORT = {"harness", "harness.settings", "harness.results", "harness.config", "harness.stats",
                           "harness.studies",
                           "harness.tasks", "harness.registry", "harness.errors", "harness.files"}
# modules that are about one task (the benchmark of the pairs task's reference configuration);
# every other module outside harness/tasks names none
ABOUT_A_TASK = {"harness.bench"}


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


PROJECT = ("harness", "architectures", "minidl")
REFERENCE = re.compile(r"^((?:harness|architectures|minidl)(?:\.\w+)*)(?::[\w.]+)?$")


def imports(path: Path):
    """(module, names imported from it, line, kind) for every project import in the file; kind
    is "import" or "string" (a module named in a string literal)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno, "import") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [alias.name for alias in node.names]
            modules = {f"{base}.{name}" for name in names if (ROOT / Path(*f"{base}.{name}".split("."))).with_suffix(".py").exists()
                       or (ROOT / Path(*f"{base}.{name}".split("."))).is_dir()}
            found.append((base, [n for n in names if f"{base}.{n}" not in modules], node.lineno, "import"))
            found += [(module, [], node.lineno, "import") for module in modules]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = REFERENCE.match(node.value)
            if match and existing_module(match.group(1)):
                found.append((existing_module(match.group(1)), [], node.lineno, "string"))
    return [(module, names, line, kind) for module, names, line, kind in found if module.split(".")[0] in PROJECT]


def existing_module(name: str) -> str | None:
    """The longest prefix of `name` that is a module of the project (a string naming a class of it, too)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ROOT / Path(*parts[:end])
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts[:end])
    return None


SOURCES = sorted(p for folder in PROJECT for p in (ROOT / folder).rglob("*.py"))
GRAPH = {module_name(path): imports(path) for path in SOURCES}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers_and_keep_private_names_private(path):
    here = module_name(path)
    problems = []
    for module, names, line, kind in GRAPH[here]:
        how = "names in a string" if kind == "string" else "imports"
        if group(module) != group(here) and LAYERS[group(module)] > LAYERS[group(here)]:
            problems.append(f"line {line}: {here} ({group(here)}) {how} {module} ({group(module)}), a layer above it")
        if group(here) == "presentation" and group(module) != "presentation" and module not in PRESENTATION_MAY_IMPORT:
            problems.append(f"line {line}: presentation module {here} {how} {module}")
        if group(here) == "backends" and group(module) != "backends" and module not in BACKENDS_MAY_IMPORT:
            problems.append(f"line {line}: backend {here} {how} {module}: backends receive the work instead")
        private = [name for name in names if name.startswith("_") and not name.startswith("__")]
        if private and module != here:
            problems.append(f"line {line}: {here} imports private {', '.join(private)} from {module}")
    assert not problems, "\n".join(problems)


def test_the_layering_test_sees_string_references():
    found = {(module, kind) for module, _, _, kind in GRAPH["harness.tasks"]}
    assert ("harness.tasks.pairs", "string") in found and ("harness.tasks.disk", "string") in found
    assert any(kind == "string" and module == "harness.tasks.pairs.sequential"
               for module, _, _, kind in GRAPH["harness.tasks.pairs"])


def test_no_import_cycle():
    """Imports only: a string reference is resolved where it is called, not when its module loads."""
    edges = {module: {target for target, _, _, kind in found if target in GRAPH and target != module and kind == "import"}
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


TASK_NAMES = ("pairs", "disk")


@pytest.mark.parametrize("path", [p for p in SOURCES if module_name(p).startswith("harness")
                                  and not module_name(p).startswith("harness.tasks.")
                                  and module_name(p) not in ABOUT_A_TASK], ids=lambda p: str(p.relative_to(ROOT)))
def test_generic_modules_name_no_task(path):
    """Outside harness/tasks, no module imports a task's code, compares with a task's name or
    reads a task's own setting by name: each task owns those."""
    here = module_name(path)
    problems = [f"line {line}: imports {module}" for module, _, line, _ in GRAPH[here]
                if module.startswith("harness.tasks.") and here != "harness.tasks"]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            constants = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant)]
            problems += [f"line {node.lineno}: compares with the task name {value!r}" for value in constants if value in TASK_NAMES]
    if here == "harness.tasks":  # the registry lists the built-in tasks by their modules, nothing more
        problems = [p for p in problems if "imports" not in p]
    assert not problems, "\n".join(problems)


def test_training_functions_stay_short():
    """The hot path reads as a protocol and short drivers: no function over 50 lines."""
    long = []
    for path in [*sorted((ROOT / "harness" / "training").glob("*.py")), *sorted((ROOT / "harness" / "tasks").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 50:
                long.append(f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, "\n".join(long)


def test_every_command_fits_on_a_screen():
    """The command line is a thin layer over the API: no command's body over 40 lines (its
    options and docstring aside)."""
    tree = ast.parse((ROOT / "harness" / "cli.py").read_text())
    long = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(getattr(d, "attr", "") == "command" or
                                                     getattr(getattr(d, "func", None), "attr", "") == "command"
                                                     for d in node.decorator_list):
            body = node.body[1:] if ast.get_docstring(node) else node.body
            lines = body[-1].end_lineno - body[0].lineno + 1
            if lines > 40:
                long.append(f"{node.name}: {lines} lines")
    assert not long, "\n".join(long)
