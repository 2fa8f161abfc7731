"""Files the harness writes for its reader (reports, pages, figures): each appears whole or not
at all, written under a temporary name beside its place and renamed once complete, so that a
full disk, a kill or an error halfway leaves no truncated file behind."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """`write(temporary)` fills a temporary file beside `path`, which then replaces `path` in
    one rename; the temporary file is removed whatever went wrong, and the error raised."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(error, OSError) and error.filename in (None, str(temporary)):  # name the file meant
            raise type(error)(error.errno, error.strerror or str(error), str(path)) from None
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """`text` (UTF-8) at `path`, whole or not at all."""
    return write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def save_figure(figure, path: str | Path, **options) -> Path:
    """A matplotlib figure at `path` in the format of its suffix, whole or not at all."""
    path = Path(path)
    return write_atomically(path, lambda temporary: figure.savefig(temporary, format=path.suffix.lstrip("."), **options))


def output_folder(folder: str | Path, option: str) -> Path:
    """`folder` made ready for output files (created with its parents); OSError's one line,
    naming `option`, when it cannot be: a file in its way, no permission, a full disk."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(20, f"{option} {folder}: a file is in the way, not a folder", str(folder)) from None
    except OSError as error:
        raise type(error)(error.errno, f"{option} {folder}: {error.strerror}", str(folder)) from None
    return folder


def write_bytes(path: str | Path, data: bytes) -> Path:
    """`data` at `path`, whole or not at all."""
    return write_atomically(path, lambda temporary: temporary.write_bytes(data))
