"""Plugins: a user's own code that registers models, tasks or backends when imported, named by
a matrix's `plugins = [...]` or `--plugin`: a `.py` file (relative to the matrix's folder) or an
importable module. Every run records the text it imported and its SHA-256."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.registry import one_line


class PluginError(Exception):
    """A plugin that cannot be imported; the message names it and the error, in one line."""


@dataclass(frozen=True)
class PluginSource:
    """A plugin as it was used: how it was named, the file imported, and its text's SHA-256."""

    spec: str
    path: str | None
    sha256: str | None
    text: str | None


def _where(error: BaseException, path: Path) -> str:
    """' at line N' of the plugin file where the error was raised, when it was raised there."""
    import traceback

    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if Path(frame.filename) == path]
    return f" at line {lines[-1]}" if lines else ""


def is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def load_plugin(spec: str, base: str | Path | None = None) -> PluginSource:
    """Import a plugin: a .py file (relative to `base`, the matrix file's folder, when given) or
    an importable module; its registrations take effect. Importing the same file twice is one
    import. PluginError in one line otherwise."""
    if is_file_spec(spec):
        path = Path(spec).expanduser()
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        path = path.resolve()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise PluginError(f"plugin {spec}: cannot read {path} ({one_line(error)})") from None
        digest = hashlib.sha256(text.encode()).hexdigest()
        name = f"harness_plugin_{path.stem}_{digest[:12]}"
        if name not in sys.modules:
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module  # dataclasses and pickling look the module up by name
            try:
                module_spec.loader.exec_module(module)
            except BaseException as error:  # noqa: B036 - a user's import may raise anything: reported
                del sys.modules[name]
                raise PluginError(f"plugin {spec}: importing {path} failed{_where(error, path)}: {one_line(error)}") from None
        return PluginSource(spec, str(path), digest, text)
    try:
        module = importlib.import_module(spec)
    except BaseException as error:  # noqa: B036
        raise PluginError(f"plugin {spec}: cannot import the module ({one_line(error)}); "
                          "give a .py file path or a module on sys.path") from None
    path = getattr(module, "__file__", None)
    text = digest = None
    if path and path.endswith(".py"):
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        digest = hashlib.sha256(text.encode()).hexdigest()
    return PluginSource(spec, path, digest, text)
