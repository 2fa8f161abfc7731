"""Every failure of the store gets one line, a non-zero exit, and loses nothing."""

import json
import shutil
import sqlite3
import subprocess
import tempfile

import pandas as pd
import pytest
from fixtures import PROVENANCE, TINY, fill, invoke, one_line_exit_2, run_config

from harness.config import expand, load_matrix
from harness.device import policy_for
from harness.results import RunResult
from harness.runner import run_plan
from harness.store import SCHEMA_VERSION, Store, StoreBusy, StoreError
from harness.training.protocol import seeds


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture
def full_store(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        fill(store, run_config(rounds=3), [0.1, 0.2, 0.3])
    return path


def can_mount() -> bool:
    if shutil.which("mount") is None:
        return False
    with tempfile.TemporaryDirectory() as point:
        probe = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", point], capture_output=True)
        if probe.returncode != 0:
            return False
        subprocess.run(["umount", point], check=True)
    return True


needs_mount = pytest.mark.skipif(not can_mount(), reason="needs permission to mount a small file system")


@pytest.fixture
def mounted(tmp_path):
    """Mount helpers that are undone after the test: tmpfs of a size, or a read-only bind."""
    points = []

    def mount(*arguments, at):
        at.mkdir(exist_ok=True)
        subprocess.run(["mount", *arguments, str(at)], check=True)
        points.append(at)
        return at

    yield mount
    for point in reversed(points):
        subprocess.run(["umount", str(point)], check=False)


# --------------------------------------------------------------------------- what is a store


def test_a_zero_byte_store_is_one_line_for_table_and_never_rewritten(tmp_path):
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    one_line_exit_2(invoke("table", "--store", empty), "an empty file (0 bytes) holds no runs")
    one_line_exit_2(invoke("plot", "--store", empty, "--out", tmp_path / "plots"), "an empty file (0 bytes)")
    assert empty.stat().st_size == 0 and not (tmp_path / "empty.sqlite-wal").exists()
@pytest.mark.slow
def test_a_zero_byte_store_becomes_a_store_when_written(tmp_path, fake_mnist, tiny):
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    result = invoke("run", "--matrix", tiny, "--store", empty, "--workers", "1")
    assert result.exit_code == 0, result.output
    with Store.open_readonly(empty) as store:
        assert len(store.runs()) == 8


def test_fresh_refuses_a_file_that_is_not_a_store(tmp_path, fake_mnist, tiny):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    one_line_exit_2(invoke("run", "--matrix", tiny, "--store", notes, "--fresh"), "not a harness store")
    one_line_exit_2(invoke("table", "--store", notes), "not a harness store")
    assert notes.read_text() == "my notes\n" and len(list(tmp_path.iterdir())) == 2  # nothing beside it


def test_an_sqlite_database_of_another_program_is_refused(tmp_path, fake_mnist, tiny):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE contacts (name TEXT)")
    one_line_exit_2(invoke("run", "--matrix", tiny, "--store", other), "not a harness store (no runs table)")
    one_line_exit_2(invoke("table", "--store", other), "not a harness store (no runs table)")


def test_a_corrupt_store_is_one_line_for_run_and_table(full_store, fake_mnist, tiny):
    size = full_store.stat().st_size
    with open(full_store, "r+b") as handle:  # garbage over every page but the first
        handle.seek(4096)
        handle.write(b"\x5a" * (size - 4096))
    for command in (["run", "--matrix", tiny], ["table"], ["plan", "--matrix", tiny]):
        one_line_exit_2(invoke(*command, "--store", full_store), "the store is corrupt")


# --------------------------------------------------------------------------- schema versions


def old_store(path, drop=("python_version", "validation_digit_error")):
    """A store as an older harness wrote it: no schema version, fewer columns, one run."""
    with Store(path) as store:
        fill(store, run_config(encoder="mlp", epochs=2, pairs=100, batch_size=25, rounds=2), [0.3])
    connection = sqlite3.connect(path)
    columns = [row[1] for row in connection.execute("PRAGMA table_info(runs)") if row[1] not in drop]
    connection.executescript(
        f"CREATE TABLE old AS SELECT {', '.join(columns)} FROM runs; DROP TABLE runs; ALTER TABLE old RENAME TO runs;"
        "PRAGMA user_version = 0;"
    )
    connection.close()
@pytest.mark.slow
def test_an_older_store_is_migrated_before_training_and_keeps_its_runs(tmp_path, fake_mnist, tiny):
    store = tmp_path / "old.sqlite"
    old_store(store)
    with Store.open_readonly(store) as opened:  # readers work on the old layout as it is
        assert len(opened.runs()) == 1
    result = invoke("run", "--matrix", tiny, "--store", store, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "1 done, 7 to run" in result.output  # the old run counts: same configuration id
    with Store.open_readonly(store) as opened:
        runs = opened.runs()
        assert opened.connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert len(runs) == 8 and runs["python_version"].isna().sum() == 1
    assert invoke("table", "--store", store).exit_code == 0


def test_a_store_too_old_to_migrate_is_refused_before_any_training(tmp_path, fake_mnist, tiny):
    store = tmp_path / "old.sqlite"
    old_store(store, drop=("finished_at",))
    result = invoke("run", "--matrix", tiny, "--store", store)
    one_line_exit_2(result, "an older store whose runs table lacks finished_at")
    assert "to run" not in result.output


def test_a_store_of_a_newer_harness_is_refused(full_store, fake_mnist, tiny):
    with sqlite3.connect(full_store) as connection:
        connection.execute("PRAGMA user_version = 99")
    one_line_exit_2(invoke("run", "--matrix", tiny, "--store", full_store), "written by a newer harness (store schema 99")
    one_line_exit_2(invoke("table", "--store", full_store), "written by a newer harness")


# --------------------------------------------------------------------------- writing


def finished(config, round_index, status="done"):
    data_seed, model_seed = seeds(config, round_index)
    return RunResult(config.config_id, round_index, data_seed, model_seed, status,
                     metrics={"test_error": 0.1}, epochs=[{"stage": "pairs", "epoch": 1, "train_loss": 0.5}])


def test_a_failed_run_never_replaces_a_done_one(tmp_path):
    config = run_config()
    with Store(tmp_path / "s.sqlite") as store:
        store.write(finished(config, 0), config, PROVENANCE)
        store.write(finished(config, 0, "failed"), config, PROVENANCE)
        runs = store.runs()
    assert runs["status"].tolist() == ["done"]


def test_one_writer_at_a_time_and_readers_beside_it(full_store):
    with Store(full_store) as writer:
        with pytest.raises(StoreBusy) as refused:
            Store(full_store)
        holder = json.loads((full_store.parent / "s.sqlite.lock").read_text())
        assert f"pid {holder['pid']}" in str(refused.value) and "pass another --store" in str(refused.value)
        with Store.open_readonly(full_store) as reader:
            assert len(reader.runs()) == 3
        writer.write(finished(run_config(), 5), run_config(), PROVENANCE)
    with Store(full_store) as again:  # released on close
        assert len(again.runs()) == 4
@pytest.mark.slow
def test_a_store_locked_by_another_program_stops_the_run_in_one_line(tmp_path, fake_mnist, tiny):
    path = tmp_path / "s.sqlite"
    plan = expand(load_matrix(tiny))
    with Store(path, timeout=0.2) as store:
        other = sqlite3.connect(path)
        other.execute("BEGIN IMMEDIATE")  # an sqlite3 shell holding a write transaction
        try:
            with pytest.raises(StoreError, match="locked by another program"):
                run_plan(plan, store, policy=policy_for("cpu", workers=1))
        finally:
            other.rollback()
            other.close()
        assert len(store.runs()) == 0
        assert run_plan(plan, store, policy=policy_for("cpu", workers=1)).finished == 8  # nothing was left half-written
@pytest.mark.slow
def test_a_full_disk_stops_the_run_in_one_line_and_keeps_what_was_stored(tmp_path, fake_mnist, tiny, monkeypatch):
    monkeypatch.setattr("harness.runner.code_diff", lambda *args: None)  # a dirty tree's diff would fill the pages
    path = tmp_path / "s.sqlite"
    plan = expand(load_matrix(tiny))
    stored = []
    with Store(path) as store:
        pages = store.connection.execute("PRAGMA page_count").fetchone()[0]
        store.connection.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite's own "disk full"
        with pytest.raises(StoreError, match="the disk is full; free some space and run again; the runs stored before are kept"):
            run_plan(plan, store, policy=policy_for("cpu", workers=1), on_result=lambda job, result: stored.append(job.key))
    with Store.open_readonly(path) as store:
        runs = store.runs()
    assert 0 < len(runs) == len(stored) < 8 and (runs["status"] == "done").all()


@pytest.mark.slow
@needs_mount
def test_a_full_disk_through_the_command_line(tmp_path, fake_mnist, tiny, mounted):
    small = mounted("-t", "tmpfs", "-o", "size=160k", "tmpfs", at=tmp_path / "small")
    result = invoke("run", "--matrix", tiny, "--store", small / "s.sqlite", "--workers", "1")
    one_line_exit_2(result, "the disk is full")


@needs_mount
def test_read_only_media_table_works_and_run_and_fresh_refuse(full_store, tmp_path, fake_mnist, tiny, mounted):
    media = mounted("--bind", "-o", "ro", str(full_store.parent), at=tmp_path.parent / f"{tmp_path.name}-ro")
    subprocess.run(["mount", "-o", "remount,ro,bind", str(media)], check=True)
    result = invoke("table", "--store", media / "s.sqlite")
    assert result.exit_code == 0, result.output
    assert "cnn siamese ws" in result.output
    for extra in ([], ["--fresh"]):
        one_line_exit_2(invoke("run", "--matrix", tiny, "--store", media / "s.sqlite", *extra), "Read-only file system")
    with Store.open_readonly(full_store) as store:
        assert len(store.runs()) == 3


def test_store_rows_are_self_describing(constructed):
    frame = constructed.runs()
    row = frame.iloc[0]
    config = json.loads(row["config"])
    assert config["encoder"] in ("mlp", "cnn") and "lr" in config
    for column in ("data_seed", "model_seed", "code_version", "torch_version", "device", "seconds", "finished_at"):
        assert not pd.isna(row[column])


def test_runs_stored_before_a_setting_existed_table_and_pair_with_newer_ones(tmp_path):
    import sqlite3

    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        fill(store, run_config(rounds=3), [0.10, 0.20, 0.30])
        fill(store, run_config(rounds=3, aux_loss=True), [0.05, 0.10, 0.20])
    newer = ("augment_shift", "augment_rotate", "lr_schedule", "label_smoothing", "ema_decay", "test_time_augment",
             "curve_train_error")
    with sqlite3.connect(path) as connection:  # the aux-off rows as a harness before those settings wrote them
        for rowid, text in connection.execute("SELECT rowid, config FROM runs").fetchall():
            settings = json.loads(text)
            if not settings["aux_loss"]:
                connection.execute("UPDATE runs SET config = ? WHERE rowid = ?",
                                   (json.dumps({k: v for k, v in settings.items() if k not in newer}), rowid))
    with Store.open_readonly(path) as store:
        runs = store.runs()
    assert runs["augment_shift"].eq(0).all() and runs["lr_schedule"].eq("constant").all()
    # what the code did before the setting: learning curves scored the training pairs
    older = runs[runs["aux_loss"] == False]  # noqa: E712
    assert older["curve_train_error"].eq("pass").all() and runs.loc[runs["aux_loss"] == True, "curve_train_error"].eq("running").all()  # noqa: E712
    from harness.stats import effects

    frame = effects(runs)
    row = frame[frame["factor"] == "aux_loss"].iloc[0]
    assert row["rounds"] == 3 and row["effect"] == pytest.approx(-100 * (0.05 + 0.10 + 0.10) / 3)
    from harness.report.formats import write
    from harness.report.results import results_document

    assert "## Effects" in write(results_document(runs, store_path=str(path)), "markdown")


# --------------------------------------------------------------------------- one store, whatever path names it


def test_a_symlink_to_a_store_in_use_shares_its_lock(full_store, tmp_path):
    link = tmp_path / "elsewhere" / "link.sqlite"
    link.parent.mkdir()
    link.symlink_to(full_store)
    with Store(full_store):
        with pytest.raises(StoreBusy, match="in use by another harness process"):
            Store(link)
        with pytest.raises(StoreBusy):
            Store(tmp_path / "elsewhere" / ".." / "s.sqlite")
    with Store(link) as store:  # free again: the link writes the store itself
        assert len(store.runs()) == 3
    assert not (tmp_path / "elsewhere" / "link.sqlite.lock").exists()


def wal_only_rounds(path):
    """A store whose last write (rounds 3 and 4 of a second configuration) is in its WAL alone,
    and no -shm beside it, as a copy of a store in use leaves it on a read-only medium."""
    with Store(path) as store:
        fill(store, run_config(rounds=3), [0.1, 0.2, 0.3])
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA wal_autocheckpoint=0")
    copy = path.with_name("other.sqlite")
    with Store(copy) as other:
        fill(other, run_config(rounds=5, encoder="mlp"), [0.4, 0.5, 0.6, 0.7, 0.8])
    other_rows = sqlite3.connect(copy).execute("SELECT * FROM runs").fetchall()
    marks = ",".join("?" * len(other_rows[0]))
    with connection:
        connection.executemany(f"INSERT INTO runs VALUES ({marks})", other_rows)
    wal = path.with_name(path.name + "-wal")
    saved = {suffix: path.with_name(path.name + suffix).read_bytes() for suffix in ("", "-wal")}
    connection.close()  # checkpoints: put back the files as they were while it was open
    for suffix, data in saved.items():
        path.with_name(path.name + suffix).write_bytes(data)
    path.with_name(path.name + "-shm").unlink(missing_ok=True)
    assert wal.stat().st_size > 0
    return 3 + 5


@needs_mount
def test_read_only_media_with_a_wal_and_no_shm_reads_every_run(tmp_path, mounted):
    folder = tmp_path / "store"
    folder.mkdir()
    total = wal_only_rounds(folder / "s.sqlite")
    media = mounted("--bind", "-o", "ro", str(folder), at=tmp_path.parent / f"{tmp_path.name}-ro")
    subprocess.run(["mount", "-o", "remount,ro,bind", str(media)], check=True)
    with Store.open_readonly(media / "s.sqlite") as store:
        assert len(store.runs()) == total  # the WAL's runs too, never a silent subset
    result = invoke("table", "--store", media / "s.sqlite")
    assert result.exit_code == 0, result.output
    assert "mlp" in result.output  # the configuration whose every run is in the WAL


def test_a_wal_that_cannot_be_read_in_place_is_read_from_a_copy(tmp_path, monkeypatch):
    """Where SQLite cannot open the store read-only beside its WAL (no -shm can be made), the
    store is read from a private copy with its WAL, which is removed on close."""
    total = wal_only_rounds(tmp_path / "s.sqlite")
    real_connect = sqlite3.connect

    def no_read_only(database, *arguments, **options):
        if "mode=ro" in str(database):
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(database, *arguments, **options)

    monkeypatch.setattr("harness.store.sqlite3.connect", no_read_only)
    store = Store.open_readonly(tmp_path / "s.sqlite")
    copy = store._copy_folder
    assert len(store.runs()) == total
    store.close()
    assert not __import__("os").path.exists(copy)


def test_a_hot_journal_left_by_a_killed_write_is_rolled_back_in_a_copy(full_store, tmp_path):
    """A rollback journal left by a write that was killed (an old store in DELETE mode, mid-
    migration): read-only readers see the store as it was before that write, in one piece."""
    old = tmp_path / "old.sqlite"
    connection = sqlite3.connect(full_store)
    connection.execute("PRAGMA journal_mode=DELETE")
    connection.commit()
    connection.close()
    connection = sqlite3.connect(full_store, isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    connection.execute("DELETE FROM runs")
    connection.execute("PRAGMA cache_spill=1")
    connection.execute("CREATE TABLE filler(x)")
    connection.executemany("INSERT INTO filler VALUES (?)", [(b"x" * 4000,)] * 3000)  # spills to the file
    shutil.copyfile(full_store, old)
    journal = full_store.with_name(full_store.name + "-journal")
    assert journal.exists()
    shutil.copyfile(journal, old.with_name(old.name + "-journal"))
    connection.execute("ROLLBACK")
    connection.close()
    with Store.open_readonly(old) as store:
        assert len(store.runs()) == 3
    result = invoke("table", "--store", old)
    assert result.exit_code == 0, result.output


def test_a_fresh_start_killed_while_copying_leaves_nothing_like_a_backup(full_store, monkeypatch):
    def killed(*arguments):
        raise KeyboardInterrupt

    monkeypatch.setattr("harness.store.os.replace", killed)
    with Store(full_store) as store, pytest.raises(KeyboardInterrupt):
        store.start_fresh()
    monkeypatch.undo()
    left = sorted(path.name for path in full_store.parent.iterdir())
    assert not [name for name in left if ".bak" in name], left
    with Store(full_store) as store:
        assert len(store.runs()) == 3  # nothing removed
        backup = store.start_fresh()
    assert backup.name.endswith(".bak") and len(Store.open_readonly(backup).runs()) == 3
