"""A user's own code: plugins (named by a matrix's `plugins = [...]` or `--plugin`: a `.py`
file relative to the matrix's folder, or an importable module) that register models, tasks or
backends when imported, and the modules a `module:Class` name or a plugin imports from the
user's folders.

Every module of the user's is run from one reading of its text, and that text is what the
runs record (its SHA-256, and the text once in the store) and what every worker runs: the
driver reads a user module once (`UserCode`, an import hook over the user's folders: the
matrix's folder, the working directory and each plugin file's folder), and workers receive the
texts with their work and import them from there (`install`), never from a disk that may hold
another version. Modules of installed packages are the environment's, as torch is: they are
recorded with their path and SHA-256 but not shipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ENDED_ITSELF, SIGNAL_MEANINGS
from harness.registry import one_line

# the harness's own packages are never a user's module, even when the working directory holds them
OWN_PACKAGES = frozenset({"harness", "architectures", "minidl"})


class TimeLimitExceeded(BaseException):
    """A user's code past its time limit: no Exception, so that neither the harness's nor the
    code's own `except Exception` can take it for an ordinary failure and go on."""


@contextlib.contextmanager
def time_limit(seconds: float | None, reason: str):
    """Raise TimeLimitExceeded(reason) in this thread once `seconds` have passed (SIGALRM: the
    main thread of a POSIX process; elsewhere no limit, and a backend that can stops the worker).
    Code deaf to signals (a blocked SIGALRM, a native loop) is not stopped by it."""
    usable = seconds is not None and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum, frame):
        raise TimeLimitExceeded(reason)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class ChildFailed(Exception):
    """A forked child that ended without an answer (an os._exit, a crash, a kill) or outlasted
    its time; the message says which, in words."""


def call_in_child(function: Callable[[], Any], seconds: float) -> Any:
    """`function()` run in a forked copy of this process (Linux), so that nothing a user's code
    does there (an os._exit, a crash in native code, running out of memory, a hang) can end this
    one: its value is returned here, or the exception it raised is raised here; ChildFailed when
    the copy dies without answering or takes over `seconds` (it is killed then). Where fork is
    not safe (another system), `function()` runs here."""
    import os
    import pickle
    import select
    import time

    if not sys.platform.startswith("linux"):
        return function()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the copy: answer through the pipe, then leave without running this process's exit handlers
        code = 0
        try:
            os.close(read)
            with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as score:
                score.write("1000")  # out of memory, the kernel ends this copy, not the command
            try:
                outcome = (True, function())
            except BaseException as error:  # noqa: B036 - sent to the parent, which raises it
                outcome = (False, error)
            try:
                data = pickle.dumps(outcome)
            except Exception:  # noqa: BLE001 - an unpicklable answer becomes its description
                data = pickle.dumps((False, ChildFailed(one_line(outcome[1]) if not outcome[0] else "its answer "
                                                        "cannot be sent back (not picklable)")))
            with os.fdopen(write, "wb") as pipe:
                pipe.write(data)
        except BaseException:  # noqa: B036
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    chunks: list[bytes] = []
    deadline = time.monotonic() + seconds
    try:
        with os.fdopen(read, "rb", buffering=0) as pipe:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChildFailed(f"took over {seconds:g} s")
                ready, _, _ = select.select([pipe], [], [], left)
                if ready:
                    chunk = pipe.read(1 << 16)
                    if not chunk:
                        break
                    chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
    except BaseException:  # a time limit, or Ctrl-C here: the copy goes too
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise
    if not chunks:
        raise ChildFailed(_ended(status))
    succeeded, value = pickle.loads(b"".join(chunks))
    if succeeded:
        return value
    raise value


def _ended(status: int) -> str:
    import os

    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else f"signal {number}"
        return f"its process died of {name} ({SIGNAL_MEANINGS.get(name, 'killed by a signal')})"
    return f"its process ended with exit code {os.WEXITSTATUS(status)} ({ENDED_ITSELF})"


class PluginError(Exception):
    """A plugin that cannot be imported; the message names it and the error, in one line."""


@dataclass(frozen=True)
class PluginSource:
    """A user's module as it was used: how it was named (`spec`: a plugin as the matrix names
    it, or the module's name), the file, its text's SHA-256, the text, the name it runs as,
    and its kind: `plugin` (named by a matrix or --plugin) or `module` (imported by a
    `module:Class` name or by a plugin, from the user's folders)."""

    spec: str
    path: str | None
    sha256: str | None
    text: str | None
    module: str | None = None
    kind: str = "plugin"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def line_in(error: BaseException, path: str | None) -> int | None:
    """The line of the user's file `path` where the error was last in it (its traceback), or None."""
    import traceback

    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if path and frame.filename == path]
    return lines[-1] if lines else None


def _where(error: BaseException, path: str) -> str:
    """' at line N' of the user's file where the error was raised, when it was raised there."""
    line = line_in(error, path)
    return f" at line {line}" if line else ""


# --------------------------------------------------------------------------- the import hook


class UserCode(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a user's modules from texts read once: those of `shipped` (name -> (path, text),
    a worker's), and, in the driver, those found in `folders` (a top-level `name.py` or
    `name/__init__.py`, and the submodules of a package found so), read when first imported.
    Each module it runs is kept in `loaded` (name -> PluginSource), the record of the code the
    runs used. The standard library and the harness's own packages are never looked for."""

    def __init__(self):
        self.folders: list[Path] = []
        self.shipped: dict[str, tuple[str, str]] = {}
        self.loaded: dict[str, PluginSource] = {}
        self._lock = threading.Lock()

    def add_folder(self, folder: str | Path) -> None:
        folder = Path(folder).resolve()
        if folder.is_dir() and folder not in self.folders:
            self.folders.append(folder)

    def _file(self, fullname: str, path) -> Path | None:
        """The user's file for `fullname`: in the folders (top level), or in its package's
        folder (a submodule of a package this hook loaded)."""
        head, _, tail = fullname.rpartition(".")
        if head:
            if head not in self.loaded or not path:
                return None
            places, name = [Path(p) for p in path], tail
        else:
            if fullname in OWN_PACKAGES or fullname in getattr(sys, "stdlib_module_names", ()):
                return None
            places, name = self.folders, fullname
        for place in places:
            for candidate in (place / f"{name}.py", place / name / "__init__.py"):
                if candidate.is_file():
                    return candidate
        return None

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self.shipped:
            origin = self.shipped[fullname][0]
        else:
            found = self._file(fullname, path)
            if found is None:
                return None
            origin = str(found)
        package = origin.endswith("__init__.py")
        spec = importlib.machinery.ModuleSpec(fullname, self, origin=origin, is_package=package)
        if package:
            spec.submodule_search_locations = [str(Path(origin).parent)]
        spec.has_location = True
        return spec

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module) -> None:
        name, origin = module.__spec__.name, module.__spec__.origin
        with self._lock:
            if name in self.shipped:
                text = self.shipped[name][1]
            else:
                text = Path(origin).read_text(encoding="utf-8")
                self.shipped[name] = (origin, text)  # the same text again for this process's later imports
            self.loaded[name] = PluginSource(name, origin, _digest(text), text, name, "module")
        module.__file__ = origin
        exec(compile(text, origin, "exec"), module.__dict__)  # noqa: S102 - the user's own code, as import runs it

    def run_text(self, name: str, path: str, text: str, spec: str) -> None:
        """Run `text` as the module `name` (a plugin file), recorded as the plugin `spec`."""
        with self._lock:
            self.shipped[name] = (path, text)
        importlib.import_module(name)
        with self._lock:
            self.loaded[name] = PluginSource(spec, path, _digest(text), text, name, "plugin")


USER_CODE = UserCode()


def _installed() -> UserCode:
    """The process's hook, first on sys.meta_path (a user's folder shadows installed modules of
    the same name, as a script's folder does for `python script.py`)."""
    if USER_CODE not in sys.meta_path:
        sys.meta_path.insert(0, USER_CODE)
    return USER_CODE


def add_user_folder(folder: str | Path) -> None:
    """Make a folder's modules importable as the user's (a matrix's folder, the working directory)."""
    _installed().add_folder(folder)


def loaded_sources() -> list[PluginSource]:
    """Every user module this process ran from its text, plugins and modules, in import order."""
    return list(USER_CODE.loaded.values())


def shipped_texts() -> dict[str, tuple[str, str]]:
    """What a worker needs to run the same code: module name -> (path, text), for every user
    module this process ran from its text."""
    return {name: (source.path, source.text) for name, source in USER_CODE.loaded.items()}


def install(texts: dict[str, tuple[str, str]], plugins: tuple[str, ...]) -> None:
    """In a worker: serve the driver's texts of the user's modules, then import the plan's
    plugins (by the module names they ran as in the driver), so that their registrations take
    effect here too. Nothing is read from this machine's disk for them."""
    hook = _installed()
    with hook._lock:
        hook.shipped.update(texts)
    for name in plugins:
        if name in sys.modules:
            continue
        path = texts.get(name, ("?", ""))[0]
        try:
            importlib.import_module(name)
        except BaseException as error:  # noqa: B036 - a user's import may raise anything: reported
            sys.modules.pop(name, None)
            raise PluginError(f"plugin {path}: importing it failed{_where(error, path)}: {one_line(error)}") from None


# --------------------------------------------------------------------------- plugins


def is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def load_plugin(spec: str, base: str | Path | None = None) -> PluginSource:
    """Import a plugin: a .py file (relative to `base`, the matrix file's folder, when given),
    run from one reading of its text, or an importable module; its registrations take effect.
    Importing the same text twice is one import. PluginError in one line otherwise."""
    hook = _installed()
    if is_file_spec(spec):
        path = Path(spec).expanduser()
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        path = path.resolve()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise PluginError(f"plugin {spec}: cannot read {path} ({one_line(error)})") from None
        digest = _digest(text)
        name = f"harness_plugin_{path.stem}_{digest[:12]}"
        hook.add_folder(path.parent)  # the modules it imports from beside it are the user's too
        if name not in sys.modules:
            try:
                hook.run_text(name, str(path), text, spec)
            except BaseException as error:  # noqa: B036 - a user's import may raise anything: reported
                sys.modules.pop(name, None)
                raise PluginError(f"plugin {spec}: importing {path} failed{_where(error, str(path))}: "
                                  f"{one_line(error)}") from None
        return PluginSource(spec, str(path), digest, text, name, "plugin")
    try:
        module = importlib.import_module(spec)
    except BaseException as error:  # noqa: B036
        raise PluginError(f"plugin {spec}: cannot import the module ({one_line(error)}); "
                          "give a .py file path or a module on sys.path") from None
    if spec in hook.loaded:  # from the user's folders: run from its text, which is shipped
        source = hook.loaded[spec]
        return PluginSource(spec, source.path, source.sha256, source.text, spec, "plugin")
    path = getattr(module, "__file__", None)  # an installed module: recorded, not shipped
    text = digest = None
    if path and path.endswith(".py"):
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        digest = _digest(text)
    return PluginSource(spec, path, digest, text, None, "plugin")
