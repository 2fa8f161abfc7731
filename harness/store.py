"""The results store: one SQLite file (WAL), one transaction per finished run.

A run is keyed by its configuration id (SHA-256 of the canonical resolved configuration, the
round left out) and its round.

One writer at a time: a writable Store holds an exclusive lock (`flock` on `<store>.lock`,
released by the kernel when its process ends, even by `kill -9`) for as long as it is open; a
second writer is refused with a line naming the holder. Readers (`Store.open_readonly`) take no
lock, never write, and work on read-only media. Every SQLite or file-system failure becomes a
StoreError whose one-line message says what happened, where, and how to fix it.

An archive (`*.json.gz`, written by `Store.export`, `harness export`) is a store's runs, learning
curves and source texts as compressed JSON: the form results are committed in (baselines/).
`Store.open_readonly` reads one as it reads a store, so every reader (tables, plots, compare,
show) takes either.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.results import CURVE_METRICS, METRIC_NAMES, Status

if TYPE_CHECKING:
    import pandas as pd

# Version 1: runs and epochs, marked in `PRAGMA user_version`. Stores written before the
# version existed read as version 0 and are migrated (missing nullable columns added) on open.
# Version 2: runs record the plugins they used and the diff of a dirty tree, whose texts are
# kept once each in `sources`.
# Version 3: runs record the share of test pairs predicted "first <= second" and the train
# error of always answering the training set's majority class, which flag degenerate runs.
# Version 4: runs record the execution policy they trained under (threads, batched, memory
# layout, denormal flushing), which can change floats without changing the configuration.
# Version 5: runs record a task's own small outputs (`artifacts`, JSON), e.g. the disk task's
# decision grid, which its figures read.
SCHEMA_VERSION = 5
RUN_COLUMNS = {  # name -> declaration; NOT NULL columns cannot be added to an older store
    "config_id": "TEXT NOT NULL",
    "round": "INTEGER NOT NULL",
    "name": "TEXT NOT NULL",
    "config": "TEXT NOT NULL",  # JSON: every setting of the configuration, flat
    "status": "TEXT NOT NULL",
    "reason": "TEXT",
    "data_seed": "INTEGER NOT NULL",
    "model_seed": "INTEGER NOT NULL",
    **{metric: "REAL" for metric in METRIC_NAMES},  # harness.results.METRICS
    "params": "INTEGER",
    "seconds": "REAL",
    "device": "TEXT",
    "torch_version": "TEXT",
    "code_version": "TEXT",
    "python_version": "TEXT",
    "matrix": "TEXT",
    "command": "TEXT",
    "plugins": "TEXT",  # JSON: [{"spec", "path", "sha256"}] of the plugins imported for the run
    "code_diff": "TEXT",  # SHA-256 of `git diff HEAD` when the code was dirty (its text in sources)
    "execution": "TEXT",  # JSON: the DevicePolicy fields that can change floats (DevicePolicy.execution)
    "artifacts": "TEXT",  # JSON: the task's own outputs of the run (RunResult.artifacts), or NULL
    "finished_at": "TEXT NOT NULL",
}
SOURCE_COLUMNS = {  # each distinct source text once, by its SHA-256
    "sha256": "TEXT NOT NULL",
    "kind": "TEXT NOT NULL",  # plugin or diff
    "name": "TEXT",  # the plugin's path, or the commit the diff applies to
    "text": "TEXT NOT NULL",
}
EPOCH_COLUMNS = {
    "config_id": "TEXT NOT NULL",
    "round": "INTEGER NOT NULL",
    "stage": "TEXT NOT NULL",
    "epoch": "INTEGER NOT NULL",
    **{metric: "REAL" for metric in CURVE_METRICS},  # the learning curves' metrics
}


def _create_table(name: str, columns: dict[str, str], key: str) -> str:
    body = ",\n    ".join(f"{column} {kind}" for column, kind in columns.items())
    return f"CREATE TABLE IF NOT EXISTS {name} (\n    {body},\n    PRIMARY KEY ({key})\n);"


TABLES = (
    ("runs", RUN_COLUMNS, "config_id, round"),
    ("epochs", EPOCH_COLUMNS, "config_id, round, stage, epoch"),
    ("sources", SOURCE_COLUMNS, "sha256"),
)
SQLITE_HEADER = b"SQLite format 3\x00"
GZIP_HEADER = b"\x1f\x8b"
ARCHIVE_SUFFIX = ".json.gz"
ARCHIVE_KIND = "harness runs"  # an archive's "kind": what tells it from any other compressed JSON
DEFAULT_TIMEOUT = 30.0  # seconds a write waits for another program's lock on the file


class StoreError(Exception):
    """The store cannot be opened, written or read; the message says why and how to fix it."""


class StoreBusy(StoreError):
    """Another process writes this store."""


def _explain(path: Path, error: BaseException, doing: str) -> StoreError:
    """One line for an SQLite or OS error met while `doing` something ("open it") with the
    store at `path`: what happened, where, and how to fix it."""
    import errno

    text = str(error)
    lowered = text.lower()
    if isinstance(error, OSError):
        text = error.strerror or text
        if error.errno == errno.ENOSPC:
            lowered = "disk is full"
    kept = "; the runs stored before are kept" if "run" in doing or "afresh" in doing else ""
    if "disk is full" in lowered or "disk full" in lowered:
        return StoreError(f"{path}: cannot {doing}: the disk is full; free some space and run again{kept}")
    if "locked" in lowered or "busy" in lowered:
        return StoreError(
            f"{path}: cannot {doing}: locked by another program for over {DEFAULT_TIMEOUT:.0f} s ({text}); "
            f"close the program that holds it (an sqlite3 shell, a viewer) and run again{kept}"
        )
    if "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered:
        return _corrupt(path, text, doing)
    return StoreError(f"{path}: cannot {doing} ({text}); choose a writable --store path{kept}")


def _corrupt(path: Path, detail: str, doing: str | None = None) -> StoreError:
    where = f"cannot {doing}: " if doing else ""
    return StoreError(f"{path}: {where}the store is corrupt ({detail}); restore a backup (*.bak) or move it aside")


class WriterLock:
    """An exclusive, process-lifetime lock on `<store>.lock`; its file names the holder."""

    def __init__(self, store_path: Path):
        self.store_path = store_path
        # beside the file itself, whatever path (a symlink, `..`) named it: one store, one lock
        real = store_path.resolve()
        self.path = real.with_name(real.name + ".lock")
        self.handle = None

    def acquire(self) -> None:
        import fcntl

        try:
            handle = open(self.path, "a+")  # never truncated before the lock is held
        except OSError as error:
            raise _explain(self.store_path, error, f"create its lock file {self.path.name}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise StoreBusy(
                f"{self.store_path}: in use by another harness process ({_describe_holder(holder)}); "
                "wait for it to end, or pass another --store"
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(["harness", *sys.argv[1:]]),
            }))
            handle.flush()
        except OSError as error:
            handle.close()
            raise _explain(self.store_path, error, f"write its lock file {self.path.name}") from None
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.seek(0)
                self.handle.truncate()
            self.handle.close()  # closing releases the flock
            self.handle = None


def _rows_where(table: dict[str, list], keep) -> dict[str, list]:
    """The rows (by index) of a table held as columns for which `keep(index)` is true."""
    count = len(next(iter(table.values()), []))
    chosen = [index for index in range(count) if keep(index)]
    return {name: [values[index] for index in chosen] for name, values in table.items()}


def _describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"pid {holder['pid']} on {holder['host']} since {holder['since']}: {holder['command']}"
    except (ValueError, KeyError, TypeError):
        return "a process that left no description"


def is_archive(path: str | Path) -> bool:
    """Whether `path` names an archive (by its suffix): what `Store.open_readonly` reads as one."""
    return str(path).endswith(ARCHIVE_SUFFIX)


def _check_file(path: Path) -> None:
    """StoreError unless `path` is absent, empty, or starts like an SQLite database."""
    if path.is_dir():
        raise StoreError(f"{path}: is a folder, not a store; pass a file path to --store")
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as error:
        raise _explain(path, error, "read it") from None
    if header and header != SQLITE_HEADER and not is_archive(path):
        raise StoreError(f"{path}: not a harness store (not an SQLite database); pass another --store path")


class Store:
    """A results store. `Store(path)` opens it for writing (created, migrated, locked);
    `Store.open_readonly(path)` for reading only."""

    def __init__(self, path: str | Path, *, readonly: bool = False, timeout: float = DEFAULT_TIMEOUT):
        self.path = Path(path)
        self.readonly = readonly
        self.lock = None
        self.connection = None
        _check_file(self.path)
        if not readonly and is_archive(self.path):
            raise StoreError(f"{self.path}: an archive is read only (tables, plots, compare and show read it); train "
                             "into a store (--store results/NAME.sqlite) and `harness export` it")
        try:
            if readonly:
                self._open_readonly()
            else:
                self._open_writable(timeout)
        except BaseException:
            self.close()
            raise

    @classmethod
    def open_readonly(cls, path: str | Path) -> Store:
        """The store at `path` for reading; StoreError when there is none or it cannot be read."""
        return cls(path, readonly=True)

    # ----------------------------------------------------------------------- opening

    def _open_writable(self, timeout: float) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _explain(self.path, error, "create its folder") from None
        self.lock = WriterLock(self.path)
        self.lock.acquire()
        try:
            self.connection = sqlite3.connect(self.path.resolve(), timeout=timeout)
            self._check_integrity()
            self.connection.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except sqlite3.Error as error:
            raise _explain(self.path, error, "open it") from None

    def _open_readonly(self) -> None:
        if not self.path.is_file():
            raise StoreError(f"{self.path}: no store here; run `harness run` first or pass --store")
        if self.path.stat().st_size == 0:
            raise StoreError(f"{self.path}: an empty file (0 bytes) holds no runs; run `harness run` first or pass --store")
        if is_archive(self.path):
            self._open_archive()
            return
        real = self.path.resolve()
        uri = real.as_uri()
        pending = [side for side in (Path(f"{real}-wal"), Path(f"{real}-journal")) if side.is_file() and side.stat().st_size]
        try:
            self.connection = sqlite3.connect(f"{uri}?mode=ro", uri=True)
            self._check_integrity()
        except sqlite3.OperationalError as error:
            if self.connection is not None:
                self.connection.close()
                self.connection = None
            if pending:
                # a WAL whose -shm cannot be made here (read-only media), or a journal left by an
                # interrupted write: SQLite needs to write beside the file to read it whole, so the
                # store is read from a copy, never as a silent subset of its runs
                self._open_copy(real, pending)
            elif os.access(self.path.parent, os.W_OK):
                raise _explain(self.path, error, "read it") from None
            else:  # read-only media and a self-contained file: nothing else to read
                self.connection = sqlite3.connect(f"{uri}?immutable=1", uri=True)
                try:
                    self._check_integrity()
                except sqlite3.Error as error:
                    raise _explain(self.path, error, "read it") from None
        except sqlite3.Error as error:
            raise _explain(self.path, error, "read it") from None
        self._check_kind(empty_is_new=False)

    def _open_copy(self, real: Path, pending: list[Path]) -> None:
        """Open a private copy of the store with its WAL or journal (in a temporary folder,
        removed on close), where SQLite can apply them; a StoreError in one line if it cannot."""
        import shutil
        import tempfile

        folder = tempfile.mkdtemp(prefix="harness-store-")
        self._copy_folder = folder
        copy = Path(folder) / real.name
        sides = ", ".join(side.name for side in pending)
        try:
            shutil.copyfile(real, copy)
            for side in pending:
                shutil.copyfile(side, Path(folder) / side.name)
            self.connection = sqlite3.connect(copy)
            self._check_integrity()
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"{self.path}: cannot read it with {sides} (its latest writes), which need a writable "
                             f"folder ({getattr(error, 'strerror', None) or error}); copy the store with {sides} to "
                             "a writable folder and pass that --store") from None

    def _open_archive(self) -> None:
        """An archive loaded into a private in-memory store (tables as `Store` writes them), or
        a StoreError in one line: not gzip, not JSON, not an archive, or of a newer harness."""
        import gzip

        fix = f"write it again with `harness export --store STORE --out {self.path}`"
        try:
            with gzip.open(self.path, "rt", encoding="utf-8") as handle:
                document = json.load(handle)
        except (OSError, EOFError, ValueError) as error:
            raise StoreError(f"{self.path}: not a harness archive ({type(error).__name__}: {error}); {fix}") from None
        if not isinstance(document, dict) or document.get("kind") != ARCHIVE_KIND:
            raise StoreError(f"{self.path}: compressed JSON but not a harness archive (no \"kind\": "
                             f"\"{ARCHIVE_KIND}\"); {fix}")
        version = document.get("schema")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: an archive of store schema {version!r}, this harness reads up to "
                             f"{SCHEMA_VERSION}; upgrade this harness (a newer checkout, pip install -e .)")
        self.connection = sqlite3.connect(":memory:")
        try:
            with self.connection:
                for table, columns, key in TABLES:
                    self.connection.execute(_create_table(table, columns, key))
                    given = document.get(table) or {}
                    if not isinstance(given, dict) or not all(isinstance(v, list) for v in given.values()):
                        raise ValueError(f"{table}: not columns of values")
                    names = [name for name in given if name in columns]  # a column of a later schema is not read
                    lengths = {len(given[name]) for name in names}
                    if len(lengths) > 1:
                        raise ValueError(f"{table}: columns of different lengths")
                    if names:
                        self.connection.executemany(
                            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
                            zip(*(given[name] for name in names)))
        except (sqlite3.Error, ValueError, TypeError) as error:
            self.connection.close()
            self.connection = None
            raise StoreError(f"{self.path}: a damaged harness archive ({error}); {fix}") from None

    def export(self, target: str | Path, config_ids: set[str] | None = None) -> int:
        """Write the store's runs (only those of `config_ids` when given), their learning curves
        and the source texts they refer to as an archive at `target` (atomically); the number
        of runs written. Columns are written as lists, which keeps the file small and exact
        (floats as JSON writes them, which reads back to the same float)."""
        import gzip

        from harness.files import write_bytes

        def columns(table: str, where: str = "", arguments: tuple = ()) -> dict[str, list]:
            cursor = self.connection.execute(f"SELECT * FROM {table}{where}", arguments)
            names = [description[0] for description in cursor.description]
            rows = cursor.fetchall()
            return {name: [row[index] for row in rows] for index, name in enumerate(names)}

        try:
            runs = columns("runs", " ORDER BY config_id, round")
            epochs = columns("epochs", " ORDER BY config_id, round, stage, epoch")
            sources = columns("sources", " ORDER BY sha256")
        except sqlite3.Error as error:
            raise _explain(self.path, error, "read it") from None
        if config_ids is not None:
            runs = _rows_where(runs, lambda index: runs["config_id"][index] in config_ids)
            epochs = _rows_where(epochs, lambda index: epochs["config_id"][index] in config_ids)
        referred = {value for value in runs.get("code_diff", []) if value}
        for text in runs.get("plugins", []):
            referred |= {plugin.get("sha256") for plugin in json.loads(text or "[]") if isinstance(plugin, dict)}
        sources = _rows_where(sources, lambda index: sources["sha256"][index] in referred)
        document = {"kind": ARCHIVE_KIND, "schema": SCHEMA_VERSION, "runs": runs, "epochs": epochs, "sources": sources}
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
        # mtime 0: the same runs give the same bytes, so a committed archive changes only with its runs
        write_bytes(Path(target), gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
        return len(runs.get("config_id", []))

    def _check_integrity(self) -> None:
        rows = self.connection.execute("PRAGMA quick_check").fetchall()
        problems = [row[0] for row in rows if row[0] != "ok"]
        if problems:
            raise _corrupt(self.path, problems[0])

    def _tables(self) -> set[str]:
        return {row[0] for row in self.connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _version(self) -> int:
        return self.connection.execute("PRAGMA user_version").fetchone()[0]

    def _check_kind(self, *, empty_is_new: bool) -> tuple[int, set[str]]:
        """The store's schema version and tables; StoreError for a store of a newer harness or a
        database that is not a harness store (an empty one is a new store when `empty_is_new`)."""
        version, tables = self._version(), self._tables()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: written by a newer harness (store schema {version}, this harness reads up to "
                f"{SCHEMA_VERSION}); upgrade this harness (a newer checkout, pip install -e .) or pass another --store"
            )
        if version < SCHEMA_VERSION and "runs" not in tables and (tables or not empty_is_new):
            raise StoreError(f"{self.path}: an SQLite database but not a harness store (no runs table); pass another --store path")
        return version, tables

    def _migrate(self) -> None:
        """Create the tables of a new store; bring an older store to SCHEMA_VERSION, or refuse."""
        version, tables = self._check_kind(empty_is_new=True)
        if version == SCHEMA_VERSION:
            return
        with self.connection:  # one transaction: the store is migrated whole or not at all
            self.connection.execute("BEGIN IMMEDIATE")  # DDL opens no transaction by itself
            for table, columns, key in TABLES:
                present = {row[1] for row in self.connection.execute(f"PRAGMA table_info({table})")}
                if not present:
                    self.connection.execute(_create_table(table, columns, key))
                    continue
                missing = [c for c in columns if c not in present]
                required = [c for c in missing if "NOT NULL" in columns[c]]
                if required:
                    raise StoreError(
                        f"{self.path}: an older store whose {table} table lacks {', '.join(required)}; "
                        "it cannot be migrated: move it aside (rename the file) and run again"
                    )
                for column in missing:
                    self.connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {columns[column]}")
            self.connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # ----------------------------------------------------------------------- closing

    def close(self) -> None:
        """Checkpoint the WAL into the main file (a writer), close, release the writer lock."""
        if self.connection is not None:
            if not self.readonly:
                with contextlib.suppress(sqlite3.Error):
                    # another program's lock (or a full disk) must not hold the exit up: the WAL
                    # is consistent as it is, and the next open checkpoints it
                    self.connection.execute("PRAGMA busy_timeout = 1000")
                    self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.connection.close()
            self.connection = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        folder, self._copy_folder = getattr(self, "_copy_folder", None), None
        if folder:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----------------------------------------------------------------------- --fresh

    def start_fresh(self) -> Path | None:
        """Back the store up under a name no other backup has, then empty it; the backup's path,
        or None when there was nothing to keep. The backup is a consistent copy made through
        SQLite's backup API (the WAL included), so runs not yet checkpointed are kept too; the
        store is emptied in one transaction only after the copy is complete."""
        self._require_writer()
        try:
            count = self.connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            if count == 0:
                return None
            # written under a name that is no backup's, renamed once complete: a --fresh killed
            # while copying leaves nothing that looks like a backup
            backup, partial = self._reserve_backup_name()
            try:
                target = sqlite3.connect(partial)
                try:
                    self.connection.backup(target)
                    target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
                    copied = target.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
                finally:
                    target.close()
                if copied != count:
                    raise StoreError(f"{backup}: the backup holds {copied} runs of {count}; nothing was removed")
                os.replace(partial, backup)
            except BaseException:
                for leftover in (partial, Path(f"{partial}-journal"), backup):
                    leftover.unlink(missing_ok=True)
                raise
            with self.connection:
                self.connection.execute("DELETE FROM epochs")
                self.connection.execute("DELETE FROM runs")
            return backup
        except sqlite3.Error as error:
            raise _explain(self.path, error, "start afresh (nothing was removed)") from None
        except OSError as error:
            raise _explain(self.path, error, "write the backup for --fresh (nothing was removed)") from None

    def _reserve_backup_name(self) -> tuple[Path, Path]:
        """A backup name no file has, and the hidden name it is written under first (created
        here, so that no other harness takes it)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for attempt in range(1000):
            suffix = f"{stamp}" if attempt == 0 else f"{stamp}-{attempt}"
            candidate = self.path.with_name(f"{self.path.name}.{suffix}.bak")
            partial = candidate.with_name(f".{candidate.name}.partial")
            if candidate.exists():
                continue
            try:
                os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                return candidate, partial
            except FileExistsError:
                continue
        raise StoreError(f"{self.path}: 1000 backups named for {stamp} already exist; remove some and run again")

    def _require_writer(self) -> None:
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")

    # ----------------------------------------------------------------------- runs

    def finished_keys(self) -> set[tuple[str, int]]:
        """Keys of runs that are done (failed runs are tried again)."""
        try:
            rows = self.connection.execute("SELECT config_id, round FROM runs WHERE status = 'done'").fetchall()
        except sqlite3.Error as error:
            raise _explain(self.path, error, "read its runs") from None
        return {(config_id, round_index) for config_id, round_index in rows}

    def policies(self) -> dict[str, int]:
        """How many finished runs each execution policy trained (harness.device.policy_tag: ""
        for the CPU's default), read from the runs' device and execution record."""
        from harness.device import execution_record, policy_tag

        try:
            rows = self.connection.execute(
                "SELECT device, execution, COUNT(*) FROM runs WHERE status = 'done' GROUP BY device, execution").fetchall()
        except sqlite3.Error as error:
            raise _explain(self.path, error, "read its runs") from None
        counts: dict[str, int] = {}
        for device, execution, count in rows:
            tag = policy_tag(device, execution_record(execution))
            counts[tag] = counts.get(tag, 0) + count
        return counts

    def write(self, result, config, provenance: dict[str, str]) -> None:
        """Store one finished run and its learning curve, all or nothing. A failed run never
        replaces a run stored as done."""
        self._require_writer()
        row = {
            "config_id": result.config_id,
            "round": result.round,
            "name": config.name,
            "config": json.dumps(config.settings(), sort_keys=True),
            "status": result.status,
            "reason": result.reason,
            "data_seed": result.data_seed,
            "model_seed": result.model_seed,
            **{metric: result.metrics.get(metric) for metric in METRIC_NAMES},
            "params": result.params,
            "seconds": result.seconds,
            "device": result.device,
            "artifacts": json.dumps(result.artifacts, sort_keys=True) if getattr(result, "artifacts", None) else None,
            **provenance,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        own = getattr(result, "execution", None)
        if own and row.get("execution"):  # the run's own facts (its memory layout) beat the plan's policy
            row["execution"] = json.dumps({**json.loads(row["execution"]), **own}, sort_keys=True)
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        key = (result.config_id, result.round)
        try:
            with self.connection:  # one transaction: the run and its epochs, or nothing
                stored = self.connection.execute(
                    "SELECT status FROM runs WHERE config_id = ? AND round = ?", key
                ).fetchone()
                if stored is not None and stored[0] == Status.DONE and result.status != Status.DONE:
                    return
                self.connection.execute("DELETE FROM epochs WHERE config_id = ? AND round = ?", key)
                self.connection.execute(f"INSERT OR REPLACE INTO runs ({columns}) VALUES ({marks})", tuple(row.values()))
                self.connection.executemany(
                    f"INSERT INTO epochs ({', '.join(EPOCH_COLUMNS)}) VALUES ({', '.join('?' for _ in EPOCH_COLUMNS)})",
                    [(result.config_id, result.round, epoch["stage"], epoch["epoch"],
                      *(epoch.get(metric) for metric in CURVE_METRICS)) for epoch in result.epochs],
                )
        except sqlite3.Error as error:
            raise _explain(self.path, error, "store a finished run") from None

    def keep_sources(self, sources: list[tuple[str, str, str | None, str]]) -> None:
        """Keep source texts (sha256, kind, name, text) the runs about to be written refer to;
        a text already kept is not written again."""
        self._require_writer()
        try:
            with self.connection:
                self.connection.executemany(
                    "INSERT OR IGNORE INTO sources (sha256, kind, name, text) VALUES (?, ?, ?, ?)", sources
                )
        except sqlite3.Error as error:
            raise _explain(self.path, error, "keep the runs' source texts") from None

    def sources(self) -> pd.DataFrame:
        """The kept source texts (empty for a store older than version 2)."""
        import pandas as pd  # here, not at the top: worker processes use the store's names, never its frames

        if "sources" not in self._tables():
            return pd.DataFrame(columns=list(SOURCE_COLUMNS))
        try:
            return pd.read_sql_query("SELECT * FROM sources ORDER BY kind, name", self.connection)
        except (sqlite3.Error, pd.errors.DatabaseError) as error:
            raise _explain(self.path, error, "read its source texts") from None

    def runs(self) -> pd.DataFrame:
        """Every stored run, one row each, the resolved configuration parsed into columns (every
        setting any registered task declares, as harness.tasks.declared() lists them).

        A run stored before a setting existed has no value for it: it gets the setting's
        neutral value (the value that reproduces the code before the setting, which is why
        such a value leaves the configuration id unchanged), else its default, so old and new
        runs of one configuration show the same settings and pair up."""
        import pandas as pd

        from harness.tasks import declared

        try:
            frame = pd.read_sql_query("SELECT * FROM runs ORDER BY config_id, round", self.connection)
        except (sqlite3.Error, pd.errors.DatabaseError) as error:
            raise _explain(self.path, error, "read its runs") from None
        if frame.empty:
            return frame
        for column in RUN_COLUMNS:  # an older store, read without migrating: its runs lack the value
            if column not in frame:
                frame[column] = None
        # a setting's neutral value is what the code computed before the setting existed
        defaults = {name: declaration.meta.neutral if declaration.meta.has_neutral else declaration.default
                    for name, declaration in declared().items()}
        settings = pd.DataFrame([{**defaults, **json.loads(text)} for text in frame["config"]], index=frame.index)
        return pd.concat([frame, settings.drop(columns=[c for c in settings if c in frame])], axis=1)

    def epochs(self) -> pd.DataFrame:
        import pandas as pd

        try:
            return pd.read_sql_query("SELECT * FROM epochs ORDER BY config_id, round, stage, epoch", self.connection)
        except (sqlite3.Error, pd.errors.DatabaseError) as error:
            raise _explain(self.path, error, "read its learning curves") from None
