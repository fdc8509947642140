"""Unit tests of the sample-data generator: layout, formats, price realism, determinism and dirty-mode defects."""

from __future__ import annotations

import datetime
from pathlib import Path

import polars as pl
import pytest

from mytrader_pipeline.core.formats import BIST_COLUMNS, STANDARD_COLUMNS
from mytrader_pipeline.sampledata import (
    BAD_ROW_KINDS,
    DEFAULT_END_DATE,
    FILE_DEFECT_KINDS,
    TURKISH_INDEX_CODE,
    SampleSummary,
    generate_sample,
)

SCALE = 0.05
FOLDERS = {"BIST": "BIST", "CRYPTO": "Crypto", "NASDAQ": "NASDAQ", "NYSE": "NYSE"}
STANDARD_HEADER = "HisseKodu,Tarih,AcilisFiyati,EnYuksek,EnDusuk,KapanisFiyati,DuzeltilmisKapanis,Hacim"


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> SampleSummary:
    return generate_sample(tmp_path_factory.mktemp("clean"), scale=SCALE)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> SampleSummary:
    return generate_sample(tmp_path_factory.mktemp("dirty"), scale=SCALE, dirty=True)


def _csv_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/*.csv"))


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in _csv_files(root)}


def _data_lines(data: bytes) -> int:
    return data.count(b"\n") - 1 + (not data.endswith(b"\n"))


def _read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema_length=None).with_columns(pl.col("Tarih").str.to_date("%Y-%m-%d"))


def test_file_counts_per_market(clean: SampleSummary) -> None:
    assert clean.files == {"BIST": 6, "CRYPTO": 1, "NASDAQ": 3, "NYSE": 3}
    for code, folder in FOLDERS.items():
        assert len(list((clean.root / folder).glob("*.csv"))) == clean.files[code]
    assert clean.dirty_files == [] and clean.defects == {}


def test_tiny_scale_writes_one_file_per_market_and_scale_must_be_positive(tmp_path: Path) -> None:
    summary = generate_sample(tmp_path / "tiny", scale=0.001)
    assert summary.files == {"BIST": 1, "CRYPTO": 1, "NASDAQ": 1, "NYSE": 1}
    assert [p.name for p in _csv_files(summary.root)] == ["THYAO.csv", "BTCUSDT.csv", "AAPL.csv", "IBM.csv"]
    with pytest.raises(ValueError, match="scale"):
        generate_sample(tmp_path / "none", scale=0)


def test_summary_rows_equal_data_lines(clean: SampleSummary, dirty: SampleSummary) -> None:
    for summary in (clean, dirty):
        for code, folder in FOLDERS.items():
            lines = sum(_data_lines(p.read_bytes()) for p in (summary.root / folder).glob("*.csv"))
            assert summary.rows[code] == lines
        assert summary.total_rows == sum(summary.rows.values())
    # ~20 years of weekdays per stock file, 8 years of days per crypto file
    assert clean.rows["NASDAQ"] % 3 == 0 and 5200 < clean.rows["NASDAQ"] / 3 < 5230
    assert clean.rows["CRYPTO"] in (2921, 2922)


def test_exact_headers_and_plain_utf8(clean: SampleSummary) -> None:
    for path in _csv_files(clean.root):
        data = path.read_bytes()
        text = data.decode("utf-8")  # strict: clean files are UTF-8 ...
        assert not data.startswith(b"\xef\xbb\xbf") and b"\r" not in data and text.endswith("\n")  # ... no BOM, LF
        expected = ",".join(BIST_COLUMNS) if path.parent.name == "BIST" else STANDARD_HEADER
        assert text.split("\n", 1)[0] == expected
    assert ",".join(STANDARD_COLUMNS) == STANDARD_HEADER


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path: Path, dirty: SampleSummary) -> None:
    again = generate_sample(tmp_path / "again", scale=SCALE, dirty=True)
    assert _snapshot(again.root) == _snapshot(dirty.root)
    assert again.dirty_files == dirty.dirty_files
    other = _snapshot(generate_sample(tmp_path / "other", seed=7, scale=SCALE).root)
    base = _snapshot(generate_sample(tmp_path / "base", scale=SCALE).root)
    assert other.keys() == base.keys()  # same symbols
    assert all(other[name] != base[name] for name in base)


def test_dirty_mode_leaves_other_files_identical_to_clean(clean: SampleSummary, dirty: SampleSummary) -> None:
    clean_files, dirty_files = _snapshot(clean.root), _snapshot(dirty.root)
    assert clean_files.keys() == dirty_files.keys()
    changed = sorted(name for name in clean_files if clean_files[name] != dirty_files[name])
    assert changed == dirty.dirty_files


def test_prices_are_consistent(clean: SampleSummary) -> None:
    for path in _csv_files(clean.root):
        df = _read(path)
        close = "HG_KAPANIS" if path.parent.name == "BIST" else "KapanisFiyati"
        o, h, lo, c = pl.col("AcilisFiyati"), pl.col("EnYuksek"), pl.col("EnDusuk"), pl.col(close)
        assert df.filter(
            (h < pl.max_horizontal(o, c)) | (lo > pl.min_horizontal(o, c)) | (lo <= 0) | (pl.col("Hacim") <= 0)
        ).is_empty(), path
        adj = df.select((pl.col("DuzeltilmisKapanis") / c).alias("f"))["f"]
        assert adj.min() > 0.1 and adj.max() <= 1.0 + 1e-9, path
        assert df["HisseKodu"].unique().to_list() == [path.stem]
        # a random walk, not a constant: daily log-returns have a realistic spread
        vol = df.select(c.log().diff().std()).item()
        assert 0.01 < vol < 0.08, path
        assert df["Hacim"].dtype == (pl.Float64 if path.parent.name == "Crypto" else pl.Int64)


def test_bist_extras(clean: SampleSummary) -> None:
    for path in (clean.root / "BIST").glob("*.csv"):
        df = _read(path)
        c, usd = pl.col("HG_KAPANIS"), pl.col("DD_DEGER")
        assert (df["HGDG_HS_KODU"] == path.stem).all()
        assert df["END_ENDEKS_KODU"].unique().to_list() == ["XU100"]
        assert df["DD_DOVIZ_KODU"].unique().to_list() == ["USD"] and df["DD_DT_KODU"].unique().to_list() == ["A"]
        assert (df["END_TARIH"] == df["Tarih"].dt.to_string("%Y-%m-%d")).all()
        assert (df["DD_TARIH"] == df["END_TARIH"]).all() and df["SERMAYE"].n_unique() == 1
        assert df.filter((pl.col("HG_AOF") < pl.col("HG_MIN")) | (pl.col("HG_AOF") > pl.col("HG_MAX"))).is_empty()
        assert (df["HG_MIN"] == df["EnDusuk"]).all() and (df["HG_MAX"] == df["EnYuksek"]).all()
        assert 1.0 < df["DD_DEGER"][0] < 2.0 and 30 < df["DD_DEGER"][-1] < 50  # USD/TRY rises
        assert df["END_DEGER"].min() > 1000 and df["END_DEGER"].max() < 15000
        checks = df.select(
            usd_price=((pl.col("DOLAR_BAZLI_FIYAT") - c / usd).abs() < 1e-3).all(),
            index_price=((pl.col("ENDEKS_BAZLI_FIYAT") - c / pl.col("END_DEGER") * 100).abs() < 1e-3).all(),
            market_cap=((pl.col("PD") - c * pl.col("SERMAYE")).abs() < 0.01).all(),
            free_float=((pl.col("HAO_PD") <= pl.col("PD")) & (pl.col("HAO_PD") > 0)).all(),
        )
        assert checks.row(0) == (True, True, True, True), path


def test_dates_weekdays_for_stocks_every_day_for_crypto(clean: SampleSummary) -> None:
    today = datetime.date.today()
    for path in _csv_files(clean.root):
        dates = _read(path)["Tarih"]
        assert dates.is_sorted() and dates.n_unique() == dates.len()
        assert dates.max() == DEFAULT_END_DATE <= today
        if path.parent.name == "Crypto":
            assert dates.diff().drop_nulls().unique().to_list() == [datetime.timedelta(days=1)]
            assert set(dates.dt.weekday().unique()) == set(range(1, 8))
            assert dates.min() == datetime.date(2018, 10, 31)
        else:
            assert set(dates.dt.weekday().unique()) == set(range(1, 6))
            assert dates.min() == datetime.date(2006, 10, 31)


def test_end_date_moves_the_history(tmp_path: Path) -> None:
    end = datetime.date(2020, 1, 15)
    summary = generate_sample(tmp_path, scale=0.001, end_date=end)
    for path in _csv_files(summary.root):
        assert _read(path)["Tarih"].max() == end


def test_dirty_mode_records_every_defect_kind(dirty: SampleSummary) -> None:
    kinds = {kind for found in dirty.defects.values() for kind in found}
    assert kinds == set(BAD_ROW_KINDS) | set(FILE_DEFECT_KINDS)
    assert dirty.dirty_files == sorted(dirty.defects)
    assert len({name.split("/")[0] for name in dirty.dirty_files}) >= 3  # spread over markets
    assert all((dirty.root / name).is_file() for name in dirty.dirty_files)


def _with_defect(summary: SampleSummary, kind: str) -> list[Path]:
    paths = [summary.root / name for name, kinds in summary.defects.items() if kind in kinds]
    assert paths, kind
    return paths


def test_dirty_encodings(dirty: SampleSummary) -> None:
    for path in _with_defect(dirty, "bom"):
        data = path.read_bytes()
        assert data.startswith(b"\xef\xbb\xbf") and data[3:].decode("utf-8").startswith(("HisseKodu,", "HGDG_HS_KODU,"))
    for path in _with_defect(dirty, "cp1254"):
        data = path.read_bytes()
        assert path.parent.name == "BIST"
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
        df = pl.read_csv(data.decode("cp1254").encode("utf-8"))
        assert df["END_ENDEKS_KODU"].unique().to_list() == [TURKISH_INDEX_CODE] and (df["HisseKodu"] == path.stem).all()
    boms = sum(p.read_bytes().startswith(b"\xef\xbb\xbf") for p in _csv_files(dirty.root))
    assert boms == len(_with_defect(dirty, "bom"))


def test_dirty_layouts(dirty: SampleSummary) -> None:
    for path in _with_defect(dirty, "semicolon_decimal_comma"):
        lines = path.read_text("utf-8").splitlines()
        assert ";" in lines[0] and "," not in lines[0] and len(lines[1].split(";")) == len(lines[0].split(";"))
        df = pl.read_csv(path, separator=";", decimal_comma=True)
        assert df["AcilisFiyati"].dtype == pl.Float64 and "," in lines[1].split(";")[2]
    for path in _with_defect(dirty, "truncated"):
        text = path.read_text("utf-8")
        header, last = text.split("\n")[0], text.split("\n")[-1]
        assert not text.endswith("\n") and 0 < len(last.split(",")) < len(header.split(","))
    for path in _with_defect(dirty, "date_format"):
        df = pl.read_csv(path)
        dates = df["Tarih"].str.to_date("%d.%m.%Y")  # strict: every date is dd.MM.yyyy
        assert dates.max() == DEFAULT_END_DATE and dates.is_sorted()


def test_dirty_bad_rows_are_few_and_of_each_kind(dirty: SampleSummary) -> None:
    markers = {
        "non_numeric_price": ",n/a,",
        "bad_date": ",2020-13-45,",
        "future_date": ",2099-01-01,",
    }
    for kind in BAD_ROW_KINDS:
        for path in _with_defect(dirty, kind):
            text = path.read_text("utf-8")
            df = pl.read_csv(path, infer_schema_length=0)  # all strings: bad rows must not break parsing
            close = "HG_KAPANIS" if path.parent.name == "BIST" else "KapanisFiyati"
            if kind in markers:
                assert markers[kind] in text
            elif kind == "negative_close":
                assert df[close].str.starts_with("-").any()
            elif kind == "empty_close":
                assert df[close].is_null().any()
            elif kind == "negative_volume":
                assert df["Hacim"].str.starts_with("-").any()
            elif kind == "duplicate_date":
                assert df["Tarih"].is_duplicated().any()
            elif kind == "high_below_low":
                prices = df.select(pl.col("EnYuksek", "EnDusuk").cast(pl.Float64, strict=False)).drop_nulls()
                assert (prices["EnYuksek"] < prices["EnDusuk"]).any()
            assert len(dirty.defects[path.relative_to(dirty.root).as_posix()]) < 0.05 * df.height
