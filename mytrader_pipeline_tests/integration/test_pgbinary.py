"""The binary COPY encoder against a real PostgreSQL: what the server stores equals the frame, cell for cell."""

import datetime as dt

import polars as pl
import psycopg
import pytest

from mytrader_pipeline.core import pgbinary

KINDS = ("text", "date", "float8", "int2", "int4", "int8", "text")
DDL = "CREATE TEMP TABLE t (s varchar(32), d date, f float8, i2 int2, i4 int4, i8 int8, c text)"


def round_trip(pg_url: str, frame: pl.DataFrame) -> list[tuple]:
    with psycopg.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute(DDL)
        with cur.copy("COPY t (s, d, f, i2, i4, i8, c) FROM STDIN (FORMAT binary)") as copy:
            copy.write(pgbinary.encode(frame, KINDS))
        cur.execute("SELECT s, d, f, i2, i4, i8, c FROM t")
        return sorted(cur.fetchall(), key=repr)


def frame_of(rows: list[tuple]) -> pl.DataFrame:
    schema = {"s": pl.String, "d": pl.Date, "f": pl.Float64, "i2": pl.Int16, "i4": pl.Int64, "i8": pl.Int64}
    return pl.DataFrame(rows, schema={**schema, "c": pl.String}, orient="row")


def test_mixed_layouts_nulls_multibyte_text_and_edge_values_survive_the_trip(pg_url: str) -> None:
    rows = [
        ("THYAO", dt.date(2024, 1, 2), 1.5, 1, 2, 3, "BIST/THYAO.csv"),
        ("ŞİŞE", dt.date(1999, 12, 31), -0.000123, -32768, -(2**31), -(2**63), "BIST/ŞİŞE.csv"),  # multibyte text
        ("A", dt.date(1970, 1, 1), None, None, None, None, None),  # nulls in every nullable kind
        ("", dt.date(2000, 1, 1), 1e300, 32767, 2**31 - 1, 2**63 - 1, ""),  # empty strings are not nulls
        (None, None, float("inf"), 0, 0, 0, "x"),
        ("LONGER_SYMBOL_32_CHARACTERS_XXXX", dt.date(2099, 12, 31), 123456.789, 7, 8, 9, "BIST/THYAO.csv"),
    ]
    assert round_trip(pg_url, frame_of(rows)) == sorted(rows, key=repr)


def test_a_frame_of_one_layout_and_constant_columns_is_encoded_whole(pg_url: str) -> None:
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(5000)]
    frame = pl.DataFrame(
        {
            "s": ["AKBNK"] * len(days),
            "d": days,
            "f": [i / 7 for i in range(len(days))],
            "i2": [5] * len(days),
            "i4": list(range(len(days))),
            "i8": [10**12 + i for i in range(len(days))],
            "c": ["run-1"] * len(days),
        },
        schema_overrides={"i2": pl.Int16},
    )
    assert round_trip(pg_url, frame) == sorted(frame.rows(), key=repr)


def test_an_empty_frame_is_a_valid_payload_with_no_rows(pg_url: str) -> None:
    assert round_trip(pg_url, frame_of([])) == []


def test_a_frame_and_types_that_disagree_are_refused() -> None:
    with pytest.raises(ValueError, match="7 columns but 2 wire types"):
        pgbinary.encode(frame_of([]), ("text", "date"))
