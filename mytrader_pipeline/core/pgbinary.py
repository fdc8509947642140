"""PostgreSQL's binary COPY format for polars frames, encoded column-wise with numpy (no Python loop per row).

The server parses binary rows far more cheaply than CSV: a float8 arrives as 8 bytes instead of text that goes
through ``float8in``. Rows are grouped by their *layout* (which cells are null, how many bytes each text cell has),
which is fixed inside a group, so each group is one packed numpy structured array filled a column at a time. A
file's rows share one or a few layouts (its text columns are mostly constant), so groups are few and large.

Kept as our own code because it measured better than the libraries that do this: as fast as pgpq (Arrow to binary
COPY) and several times faster than psycopg's ``Copy.write_row`` (a Python call per row), without another native
dependency (issue 14's review; ``benchmarks/profile_phases.py`` times the encoding phase).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl
import sqlalchemy as sa

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")  # signature, flags, extension
TRAILER = (-1).to_bytes(2, "big", signed=True)
_PG_EPOCH_DAYS = (dt.date(2000, 1, 1) - dt.date(1970, 1, 1)).days
# The binary representation of each PostgreSQL type we send: numpy dtype of the value (text: variable).
_FIXED: dict[str, str] = {"float8": ">f8", "int2": ">i2", "int4": ">i4", "int8": ">i8", "date": ">i4"}


def pg_type(column: sa.Column) -> str:
    """The binary wire type of a table column (``text`` for strings)."""
    kind = column.type
    if isinstance(kind, sa.Double | sa.Float):
        return "float8"
    if isinstance(kind, sa.SmallInteger):
        return "int2"
    if isinstance(kind, sa.BigInteger):
        return "int8"
    if isinstance(kind, sa.Integer):
        return "int4"
    if isinstance(kind, sa.Date) and not isinstance(kind, sa.DateTime):
        return "date"
    if isinstance(kind, sa.String):
        return "text"
    raise NotImplementedError(f"no binary COPY encoding for column {column.name} of type {kind}")


def _values(series: pl.Series, kind: str) -> np.ndarray:
    """The non-null values of ``series`` as the numpy dtype of ``kind`` (``text``: bytes)."""
    if kind == "text":
        return series.cast(pl.Binary).to_numpy()
    if kind == "date":
        return (series.cast(pl.Int32) - _PG_EPOCH_DAYS).to_numpy().astype(_FIXED[kind])
    return series.to_numpy().astype(_FIXED[kind])


def _size(name: str, kind: str) -> pl.Expr:
    """Per row: the cell's byte length on the wire, -1 for null."""
    col = pl.col(name)
    size = col.str.len_bytes().cast(pl.Int32) if kind == "text" else pl.lit(np.dtype(_FIXED[kind]).itemsize, pl.Int32)
    return pl.when(col.is_null()).then(pl.lit(-1, pl.Int32)).otherwise(size).alias(f"_size_{name}")


def _layout(frame: pl.DataFrame, kinds: Sequence[str]) -> tuple[list[int | None], list[str]]:
    """Each column's byte size when the same on every row (else None), and the names of the others."""
    nulls = frame.null_count().row(0)
    text = [name for name, kind in zip(frame.columns, kinds, strict=True) if kind == "text"]
    lengths = frame.select(
        *[pl.col(n).str.len_bytes().min().alias(f"{n}_lo") for n in text],
        *[pl.col(n).str.len_bytes().max().alias(f"{n}_hi") for n in text],
    ).row(0, named=True)
    fixed: list[int | None] = []
    varying: list[str] = []
    for name, kind, null_count in zip(frame.columns, kinds, nulls, strict=True):
        if null_count == frame.height:
            fixed.append(-1)
        elif null_count or (kind == "text" and lengths[f"{name}_lo"] != lengths[f"{name}_hi"]):
            fixed.append(None)
            varying.append(name)
        else:
            fixed.append(lengths[f"{name}_lo"] if kind == "text" else np.dtype(_FIXED[kind]).itemsize)
    return fixed, varying


def _encode_group(frame: pl.DataFrame, kinds: Sequence[str], sizes: Sequence[int]) -> memoryview:
    """Rows sharing one layout (``sizes``: each column's byte length, -1 null) as packed binary rows."""
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for i, (kind, size) in enumerate(zip(kinds, sizes, strict=True)):
        fields.append((f"len{i}", ">i4"))
        if size > 0:
            fields.append((f"val{i}", f"S{size}" if kind == "text" else _FIXED[kind]))
    rows = np.empty(frame.height, dtype=np.dtype(fields))
    rows["count"] = frame.width
    for i, (series, kind, size) in enumerate(zip(frame.iter_columns(), kinds, sizes, strict=True)):
        rows[f"len{i}"] = size
        if size > 0:
            if kind == "text" and series.n_unique() == 1:  # a constant (market, run id, file): broadcast it
                rows[f"val{i}"] = _values(series.head(1), kind)[0]
            else:
                rows[f"val{i}"] = _values(series, kind)
    return memoryview(rows.view(np.uint8))  # no copy


def encode(frame: pl.DataFrame, kinds: Sequence[str]) -> bytes:
    """``frame`` (columns in COPY order, wire types ``kinds``) as a complete binary COPY payload."""
    return b"".join(encode_buffers(frame, kinds))


def encode_buffers(frame: pl.DataFrame, kinds: Sequence[str]) -> list[bytes | memoryview]:
    """The payload of ``encode`` as consecutive buffers, without copying the rows into one ``bytes``."""
    return [HEADER, *encode_rows(frame, kinds), TRAILER]


def encode_rows(frame: pl.DataFrame, kinds: Sequence[str]) -> list[memoryview]:
    """``frame``'s rows in binary COPY format, without the header and trailer (a stream may take many frames)."""
    if len(kinds) != frame.width:
        raise ValueError(f"{frame.width} columns but {len(kinds)} wire types")
    if not frame.height:
        return []
    fixed, varying = _layout(frame, kinds)
    if not varying:  # the common case: one layout for the whole frame
        return [_encode_group(frame, kinds, fixed)]  # type: ignore[arg-type]
    kind_of = dict(zip(frame.columns, kinds, strict=True))
    sized = frame.with_columns(_size(name, kind_of[name]) for name in varying)
    size_names = [f"_size_{name}" for name in varying]
    parts = []
    for group in sized.partition_by(size_names, maintain_order=False):
        sizes = dict(zip(varying, group.select(size_names).row(0), strict=True))
        layout = [sizes[name] if size is None else size for name, size in zip(frame.columns, fixed, strict=True)]
        parts.append(_encode_group(group.drop(size_names), kinds, layout))
    return parts
