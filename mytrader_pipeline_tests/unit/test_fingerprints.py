"""File-change detection and run batching of the file sensors (pure: no Dagster, no database)."""

import os
from pathlib import Path

import pytest

from mytrader_pipeline.core.discovery import scan_market
from mytrader_pipeline.core.errors import ErrorClass, IngestError
from mytrader_pipeline.core.fingerprints import (
    FileCursor,
    FileState,
    assert_read_whole,
    batch_run_key,
    detect_changes,
)
from mytrader_pipeline.markets import load_markets

BIST = load_markets().get("BIST")


def _write(root: Path, name: str, text: str) -> Path:
    path = root / "BIST" / name
    path.write_text(text)
    return path


def _cursor_after(root: Path, previous: FileCursor | None = None) -> FileCursor:
    changes = detect_changes(previous or FileCursor(), scan_market(root, BIST))
    return FileCursor(files=changes.states)


def test_new_changed_touched_and_deleted_files_are_told_apart(data_root: Path) -> None:
    for name in ("A.csv", "B.csv", "C.csv", "D.csv"):
        _write(data_root, name, f"{name}\n")
    cursor = _cursor_after(data_root)
    _write(data_root, "B.csv", "B.csv\nappended day\n")
    touched = data_root / "BIST" / "C.csv"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    (data_root / "BIST" / "D.csv").unlink()
    _write(data_root, "E.csv", "E.csv\n")

    changes = detect_changes(cursor, scan_market(data_root, BIST))

    assert changes.new == ["E.csv"]
    assert changes.changed == ["B.csv"]
    assert changes.touched == ["C.csv"]
    assert changes.deleted == ["D.csv"]
    assert changes.to_load == ["E.csv", "B.csv"]
    assert changes.states["C.csv"].mtime_ns == touched.stat().st_mtime_ns  # the cursor learns the new mtime


def test_unchanged_size_and_mtime_are_not_hashed(data_root: Path) -> None:
    _write(data_root, "A.csv", "a\n")
    cursor = _cursor_after(data_root)

    def refuse(_path: Path) -> str:
        raise AssertionError("an unchanged file was read")

    changes = detect_changes(cursor, scan_market(data_root, BIST), hasher=refuse)
    assert (changes.new, changes.changed, changes.touched, changes.deleted) == ([], [], [], [])


def test_cursor_json_round_trip_and_bad_cursors_start_empty() -> None:
    cursor = FileCursor(files={"A.csv": FileState(10, 123, "ab" * 32)}, batches=7)
    assert FileCursor.from_json(cursor.to_json()) == cursor
    for bad in (None, "", "not json", '{"v": 99}', '{"v": 1, "files": {"A.csv": [1]}}'):
        assert FileCursor.from_json(bad) == FileCursor()


def test_run_keys_are_deterministic_and_follow_content() -> None:
    states = {"A.csv": FileState(1, 1, "x" * 64), "B.csv": FileState(1, 1, "y" * 64)}
    key = batch_run_key("BIST", 3, ["A.csv", "B.csv"], states)
    assert key == batch_run_key("BIST", 3, ["A.csv", "B.csv"], dict(states))
    assert key != batch_run_key("BIST", 3, ["A.csv", "B.csv"], {**states, "B.csv": FileState(1, 1, "z" * 64)})
    assert key != batch_run_key("BIST", 4, ["A.csv", "B.csv"], states)  # A -> B -> A still reloads


def test_a_file_read_whole_as_found_passes_and_any_change_since_is_file_changed(data_root: Path) -> None:
    for name in ("SAME.csv", "GREW.csv", "TOUCHED.csv", "GONE.csv", "SHORT.csv"):
        _write(data_root, name, "0123456789\n")
    found = {f.partition_key: f for f in scan_market(data_root, BIST)}
    _write(data_root, "GREW.csv", "0123456789\nmore\n")
    touched = found["TOUCHED.csv"].path  # same size, new mtime: rewritten in place with other digits
    os.utime(touched, ns=(touched.stat().st_atime_ns, found["TOUCHED.csv"].mtime_ns + 10**9))
    found["GONE.csv"].path.unlink()

    assert_read_whole(found["SAME.csv"], 11)
    for name, read in (("GREW.csv", 11), ("TOUCHED.csv", 11), ("GONE.csv", 11), ("SHORT.csv", 5)):
        with pytest.raises(IngestError) as raised:
            assert_read_whole(found[name], read)
        assert raised.value.error_class is ErrorClass.FILE_CHANGED and raised.value.retryable, name
