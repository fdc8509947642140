"""Discovery: a market's files, one partition per file, never anything outside the data root."""

import os
from pathlib import Path

import pytest

from mytrader_pipeline.core.discovery import confine, market_file, scan_market, scan_market_entries
from mytrader_pipeline.core.errors import DataPathError, ErrorClass
from mytrader_pipeline.markets import load_markets

BIST = load_markets().get("BIST")
CRYPTO = load_markets().get("CRYPTO")


def test_scan_lists_csv_files_sorted_with_their_fingerprint(data_root: Path) -> None:
    folder = data_root / "BIST"
    (folder / "THYAO.csv").write_text("THYAO\n")
    (folder / "AKBNK.CSV").write_text("AKBNK data\n")
    (folder / "notes.txt").write_text("not a csv\n")
    (folder / "sub.csv").mkdir()  # a folder named like a file is not a file
    files = scan_market(data_root, BIST)
    assert [f.partition_key for f in files] == ["AKBNK.CSV", "THYAO.csv"]
    thyao = files[1]
    assert (thyao.market, thyao.source_file, thyao.size) == ("BIST", "BIST/THYAO.csv", 6)
    assert thyao.path == (folder / "THYAO.csv").resolve()
    assert thyao.mtime_ns == (folder / "THYAO.csv").stat().st_mtime_ns


def test_scan_uses_the_market_folder_name(data_root: Path) -> None:
    (data_root / "Crypto" / "BTCUSDT.csv").write_text("x\n")
    assert [f.source_file for f in scan_market(data_root, CRYPTO)] == ["Crypto/BTCUSDT.csv"]


def test_scan_of_an_absent_market_folder_finds_nothing(tmp_path: Path) -> None:
    assert scan_market(tmp_path, BIST) == []


def test_scan_skips_names_that_cannot_be_partition_keys(data_root: Path) -> None:
    (data_root / "BIST" / "A,B.csv").write_text("x\n")
    (data_root / "BIST" / "[X].csv").write_text("x\n")
    (data_root / "BIST" / "OK.csv").write_text("x\n")
    assert [f.partition_key for f in scan_market(data_root, BIST)] == ["OK.csv"]


@pytest.mark.parametrize(
    "key", ["../NYSE/IBM.csv", "..", ".", "sub/THYAO.csv", "/etc/passwd", "a\\b.csv", "A,B.csv", "x\n.csv"]
)
def test_a_partition_key_that_is_not_a_plain_file_name_is_refused(data_root: Path, key: str) -> None:
    (data_root / "NYSE" / "IBM.csv").write_text("x\n")
    with pytest.raises(DataPathError) as info:
        market_file(data_root, BIST, key)
    assert info.value.error_class is ErrorClass.OUTSIDE_DATA_ROOT
    assert not info.value.retryable


def test_a_symlink_pointing_outside_the_data_root_is_refused(data_root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text("HisseKodu\n")
    (data_root / "BIST" / "LINK.csv").symlink_to(outside)
    with pytest.raises(DataPathError) as info:
        market_file(data_root, BIST, "LINK.csv")
    assert info.value.error_class is ErrorClass.OUTSIDE_DATA_ROOT
    assert info.value.path == "BIST/LINK.csv"
    assert scan_market(data_root, BIST) == []  # and the scan leaves it out


def test_a_symlink_inside_the_data_root_is_followed(data_root: Path) -> None:
    target = data_root / "NYSE" / "IBM.csv"
    target.write_text("x\n")
    (data_root / "BIST" / "IBM.csv").symlink_to(target)
    found = market_file(data_root, BIST, "IBM.csv")
    assert found.path == target.resolve()
    assert found.source_file == "BIST/IBM.csv"


def test_a_missing_file_is_file_missing(data_root: Path) -> None:
    with pytest.raises(DataPathError) as info:
        market_file(data_root, BIST, "GONE.csv")
    assert info.value.error_class is ErrorClass.FILE_MISSING
    assert info.value.path == "BIST/GONE.csv"
    assert "does not exist" in str(info.value)


def test_a_dangling_symlink_is_file_missing(data_root: Path) -> None:
    (data_root / "BIST" / "DANGLING.csv").symlink_to(data_root / "BIST" / "nowhere.csv")
    with pytest.raises(DataPathError) as info:
        market_file(data_root, BIST, "DANGLING.csv")
    assert info.value.error_class is ErrorClass.FILE_MISSING


def test_confine_accepts_paths_inside_and_refuses_those_outside(data_root: Path) -> None:
    assert confine(data_root, "BIST/X.csv") == (data_root / "BIST" / "X.csv").resolve()
    assert confine(data_root, data_root / "NYSE") == (data_root / "NYSE").resolve()
    for escaping in ("../outside.csv", "BIST/../../outside.csv", "/etc/passwd"):
        with pytest.raises(DataPathError) as info:
            confine(data_root, escaping)
        assert info.value.error_class is ErrorClass.OUTSIDE_DATA_ROOT


def test_every_csv_entry_is_either_loadable_or_unloadable_with_its_class(data_root: Path, tmp_path: Path) -> None:
    folder = data_root / "BIST"
    for name in ("GOOD.csv", "ALSO.CSV", "A,B.csv", "[x].csv"):
        (folder / name).write_text("x\n")
    (folder / "notes.txt").write_text("not the market's data\n")
    (folder / "SUB.csv").mkdir()
    os.mkfifo(folder / "PIPE.csv")
    (tmp_path / "secret.csv").write_text("x\n")
    (folder / "ESCAPE.csv").symlink_to(tmp_path / "secret.csv")
    (folder / "DANGLING.csv").symlink_to(folder / "nowhere.csv")
    (folder / "LOOP.csv").symlink_to(folder / "LOOP.csv")
    entries = scan_market_entries(data_root, BIST)
    assert [f.partition_key for f in entries.files] == ["ALSO.CSV", "GOOD.csv"]
    classes = {e.name: e.error.error_class for e in entries.unloadable}
    assert classes == {
        "A,B.csv": ErrorClass.INVALID_FILE_NAME,
        "[x].csv": ErrorClass.INVALID_FILE_NAME,
        "SUB.csv": ErrorClass.NOT_A_FILE,
        "PIPE.csv": ErrorClass.NOT_A_FILE,
        "DANGLING.csv": ErrorClass.NOT_A_FILE,
        "LOOP.csv": ErrorClass.NOT_A_FILE,
        "ESCAPE.csv": ErrorClass.OUTSIDE_DATA_ROOT,
    }
    assert {e.source_file for e in entries.unloadable} == {f"BIST/{name}" for name in classes}
    assert all(not e.error.retryable and e.error.path == e.source_file for e in entries.unloadable)
    assert scan_market(data_root, BIST) == entries.files  # the sensors' view: the loadable files alone


@pytest.mark.parametrize("make", [Path.mkdir, os.mkfifo], ids=["directory", "fifo"])
def test_a_partition_whose_entry_is_not_a_regular_file_is_not_a_file(data_root: Path, make: object) -> None:
    make(data_root / "BIST" / "X.csv")  # type: ignore[operator]
    with pytest.raises(DataPathError) as info:
        market_file(data_root, BIST, "X.csv")  # a fifo would block the reader forever
    assert info.value.error_class is ErrorClass.NOT_A_FILE
