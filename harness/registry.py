"""One generic registry: names -> objects, for model families, tasks, backends and output formats.

An entry is registered with its object, or with a `module:attribute` reference that is imported
the first time the name is asked for (so declaring a task or a backend imports neither torch nor
Ray). Installed packages add entries through an entry-point group, listed without importing
anything; a registry that accepts references also takes `package.module:Name` as a name. An
unknown name fails with the known names and the closest one.

    FORMATS = Registry("format")
    FORMATS.register("markdown", Markdown())
    TASKS = Registry("task", entry_points="harness.tasks")
    TASKS.register("disk", "harness.tasks.disk:TASK", builtin=True)
    TASKS.get("dsik")  # UnknownName: unknown task 'dsik'; did you mean 'disk'? known tasks: pairs, disk
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import pickle
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownName(LookupError):
    """A name no registry entry answers to; the message lists the known names and a close match."""

    def __str__(self) -> str:  # KeyError-like classes would quote the message
        return str(self.args[0]) if self.args else ""


class ReferenceFailed(ImportError):
    """A `module:attribute` reference that cannot be imported or has no such attribute."""


def close_match(word: Any, candidates: Iterable[Any]) -> str | None:
    """The candidate closest to `word` (difflib's ratio), or None when none is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1)
    return close[0] if close else None


def suggest(word: Any, candidates: Iterable[Any]) -> str:
    """"; did you mean 'x'?" for the closest candidate, or nothing."""
    close = close_match(word, candidates)
    return f"; did you mean '{close}'?" if close else ""


def one_line(error: BaseException) -> str:
    """`Type: first non-empty line of the message`."""
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def resolve_reference(reference: str) -> Any:
    """`package.module:attribute.path` -> the object it names; ReferenceFailed in one line
    (the import's own error, or the missing attribute) otherwise."""
    module_name, _, attribute = reference.partition(":")
    try:
        target = importlib.import_module(module_name)
    except BaseException as error:  # noqa: B036 - a plugin's import may raise anything: reported
        if isinstance(error, ModuleNotFoundError) and error.name == module_name.partition(".")[0]:
            raise ReferenceFailed(f"{reference}: no module {error.name!r} (looked for {error.name}.py beside the "
                                  "matrix file, in the working directory and on sys.path)") from None
        raise ReferenceFailed(f"{reference}: cannot import {module_name} ({one_line(error)})") from None
    for part in filter(None, attribute.split(".")):
        if not hasattr(target, part):
            public = [name for name in dir(target) if not name.startswith("_")]
            raise ReferenceFailed(f"{reference}: {module_name} has no {attribute!r}{suggest(part, public)}")
        target = getattr(target, part)
    return target


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and ":" in value


_REGISTRIES: dict[str, Registry] = {}  # every registry made, by kind: what a worker process must learn


def runtime_registrations() -> bytes:
    """The entries this process registered as objects, not built in (a model or task that a
    script, a notebook or a test registered), pickled by value where they cannot be imported
    (cloudpickle), each on its own: an entry that cannot be pickled is left out, and a worker
    asked for it says it does not know it."""
    import cloudpickle

    shipped: dict[str, dict[str, bytes]] = {}
    for kind, registry in _REGISTRIES.items():
        for name, target in registry._entries.items():
            if name in registry._builtin or isinstance(target, str):
                continue
            try:
                shipped.setdefault(kind, {})[name] = cloudpickle.dumps(target)
            except Exception:  # noqa: BLE001,S112 - anything unpicklable stays behind
                continue
    return pickle.dumps(shipped)


_PENDING: dict[str, dict[str, bytes]] = {}  # shipped entries by kind, registered when their registry is first asked


def restore_registrations(shipped: bytes) -> None:
    """In a worker, after its plugins: what the driver registered at run time, registered here
    too when its registry is first asked (its module may not be imported yet), unless this
    process registered the name itself; an entry that cannot be read here is left out."""
    for kind, entries in pickle.loads(shipped).items() if shipped else ():
        _PENDING.setdefault(kind, {}).update(entries)


class Registry(Generic[T]):
    """Names -> objects of one kind.

    `kind` names the entries in messages ("task"). `entry_points`: an importlib.metadata group
    whose entries installed packages add. `adopt(name, loaded)`: turns what a reference, an entry
    point or (with `references`) a `module:Name` name resolves to into an entry (a model class
    into a family, say); by default the object itself. `hint`: words added to the unknown-name
    message (how to add an entry of one's own)."""

    def __init__(self, kind: str, *, entry_points: str | None = None, references: bool = False,
                 adopt: Callable[[str, Any], T] | None = None, hint: str = "",
                 error: type[LookupError] = UnknownName):
        self.kind, self.group, self.references, self.hint, self.error = kind, entry_points, references, hint, error
        self.adopt = adopt or (lambda name, loaded: loaded)
        self._entries: dict[str, Any] = {}  # name -> the entry, or its reference until first asked
        self._builtin: list[str] = []
        _REGISTRIES[kind] = self

    # ----------------------------------------------------------------------- registering

    def _take_pending(self) -> None:
        for name, data in _PENDING.pop(self.kind, {}).items():
            if name in self._entries:
                continue
            try:
                self._entries[name] = pickle.loads(data)
            except Exception:  # noqa: BLE001,S112 - its runs fail with the registry's own line
                continue

    def register(self, name: str, target: Any, *, builtin: bool = False) -> Any:
        """Register `target` (an object, or a `module:attribute` reference imported when first
        asked for) under `name`; a later registration of the name replaces it. Returns target."""
        self._entries[name] = target
        if builtin and name not in self._builtin:
            self._builtin.append(name)
        return target

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    # ----------------------------------------------------------------------- asking

    def entry_points(self) -> dict[str, importlib.metadata.EntryPoint]:
        """Installed packages' entries by name; nothing imported."""
        if self.group is None:
            return {}
        return {point.name: point for point in importlib.metadata.entry_points(group=self.group)}

    def names(self) -> list[str]:
        """Registered names in registration order, then installed entry points'."""
        self._take_pending()
        return [*self._entries, *(name for name in self.entry_points() if name not in self._entries)]

    def builtin_names(self) -> list[str]:
        """The names registered as built in (the package's own), in order."""
        return list(self._builtin)

    def registered(self) -> dict[str, Any]:
        """The entries registered so far, references resolved (entry points left out)."""
        self._take_pending()
        return {name: self.get(name) for name in list(self._entries)}

    def __contains__(self, name: object) -> bool:
        self._take_pending()
        return isinstance(name, str) and (name in self._entries or name in self.entry_points()
                                          or (self.references and is_reference(name)))

    def get(self, name: str) -> T:
        """The entry called `name`, its reference imported on first use; the registry's error
        naming the known names and the closest one when there is none."""
        self._take_pending()
        if name in self._entries:
            entry = self._entries[name]
            if isinstance(entry, str):
                entry = self._entries[name] = self.adopt(name, resolve_reference(entry))
            return entry
        points = self.entry_points()
        if name in points:
            try:
                loaded = points[name].load()
            except BaseException as error:  # noqa: B036 - an installed package's import: reported
                raise self.error(f"{self.kind} '{name}' (entry point {points[name].value}) failed to import: "
                                 f"{one_line(error)}") from None
            if name not in self._entries:  # a module that registers the name itself when imported
                self._entries[name] = self.adopt(name, loaded)
            return self._entries[name]
        if self.references and is_reference(name):
            try:
                self._entries[name] = self.adopt(name, resolve_reference(name))
            except ReferenceFailed as error:
                raise self.error(f"{self.kind} {error}") from None
            return self._entries[name]
        raise self.error(self.unknown(name))

    def unknown(self, name: str) -> str:
        """The message for a name nobody registered."""
        known = self.names()
        close = suggest(name, known)  # "; did you mean 'x'?": the list follows it after a space, not a second ';'
        return f"unknown {self.kind} '{name}'{close}{' ' if close else '; '}known {self.kind}s: {', '.join(known)}{self.hint}"
