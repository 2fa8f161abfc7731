"""The results store: one SQLite file (WAL), one transaction per finished run.

A run is keyed by its configuration id (SHA-256 of the canonical resolved configuration, the
round left out) and its round. Only the process that owns the Store writes to it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    config_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    data_seed INTEGER NOT NULL,
    model_seed INTEGER NOT NULL,
    train_error REAL, test_error REAL, validation_error REAL,
    train_digit_error REAL, test_digit_error REAL, validation_digit_error REAL,
    train_loss REAL,
    params INTEGER,
    seconds REAL,
    device TEXT, torch_version TEXT, code_version TEXT, python_version TEXT,
    matrix TEXT, command TEXT,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (config_id, round)
);
CREATE TABLE IF NOT EXISTS epochs (
    config_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    stage TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    train_loss REAL, train_error REAL, test_error REAL, validation_error REAL,
    PRIMARY KEY (config_id, round, stage, epoch)
);
"""
METRICS = (
    "train_error",
    "test_error",
    "validation_error",
    "train_digit_error",
    "test_digit_error",
    "validation_digit_error",
    "train_loss",
)


class StoreError(Exception):
    """The store cannot be opened, written or read; the message says why and how to fix it."""


class Store:
    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise StoreError(f"{self.path}: no store here; run `harness run` first or pass --store")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.connection = sqlite3.connect(self.path, timeout=30)
            self.connection.execute("PRAGMA journal_mode=WAL")
            if create:
                self.connection.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"{self.path}: cannot open the store ({error}); choose a writable --store path") from None

    def close(self) -> None:
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def finished_keys(self) -> set[tuple[str, int]]:
        """Keys of runs that are done (failed runs are tried again)."""
        rows = self.connection.execute("SELECT config_id, round FROM runs WHERE status = 'done'")
        return {(config_id, round_index) for config_id, round_index in rows}

    def write(self, result, config, provenance: dict[str, str]) -> None:
        """Store one finished run and its learning curve, all or nothing."""
        row = {
            "config_id": result.config_id,
            "round": result.round,
            "name": config.name,
            "config": json.dumps(config.__dict__, sort_keys=True),
            "status": result.status,
            "reason": result.reason,
            "data_seed": result.data_seed,
            "model_seed": result.model_seed,
            **{metric: result.metrics.get(metric) for metric in METRICS},
            "params": result.params,
            "seconds": result.seconds,
            "device": result.device,
            **provenance,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self.connection:  # one transaction: the run and its epochs, or nothing
            self.connection.execute(
                "DELETE FROM epochs WHERE config_id = ? AND round = ?", (result.config_id, result.round)
            )
            self.connection.execute(f"INSERT OR REPLACE INTO runs ({columns}) VALUES ({marks})", tuple(row.values()))
            self.connection.executemany(
                "INSERT INTO epochs (config_id, round, stage, epoch, train_loss, train_error, test_error, validation_error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        result.config_id,
                        result.round,
                        epoch["stage"],
                        epoch["epoch"],
                        epoch.get("train_loss"),
                        epoch.get("train_error"),
                        epoch.get("test_error"),
                        epoch.get("validation_error"),
                    )
                    for epoch in result.epochs
                ],
            )

    def runs(self) -> pd.DataFrame:
        """Every stored run, one row each, the resolved configuration parsed into columns."""
        frame = pd.read_sql_query("SELECT * FROM runs ORDER BY config_id, round", self.connection)
        if frame.empty:
            return frame
        settings = pd.DataFrame([json.loads(text) for text in frame["config"]], index=frame.index)
        return pd.concat([frame, settings.drop(columns=[c for c in settings if c in frame])], axis=1)

    def epochs(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM epochs ORDER BY config_id, round, stage, epoch", self.connection)
