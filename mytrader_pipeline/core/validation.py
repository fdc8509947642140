"""Split parsed rows into accepted rows and rejected rows with reasons, validating many files in one pandera call."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pandera.polars as pa
import polars as pl

from mytrader_pipeline.core.parsing import REJECTED_SCHEMA, ParsedChunk, row_owners, split_by_part
from mytrader_pipeline.core.schemas import CHECK_COLUMNS, CHECK_MESSAGES, price_row_schema

_PART = "_part"
_FILE = "_file"
_OPTIONAL_FIELDS = ("open", "high", "low", "adj_close", "volume")


@dataclasses.dataclass
class ValidatedChunk:
    """Accepted rows (canonical columns, ``line_no`` and ``quality_score``) and rejected rows of one chunk."""

    accepted: pl.DataFrame
    rejected: pl.DataFrame

    @property
    def rows_read(self) -> int:
        """Rows this chunk read: accepted plus rejected."""
        return self.accepted.height + self.rejected.height


def _quality_score() -> pl.Expr:
    """0-100: full marks for a complete row, less for each missing optional field and for zero volume."""
    missing = pl.sum_horizontal([pl.col(c).is_null().cast(pl.Int16) for c in _OPTIONAL_FIELDS])
    zero_volume = (pl.col("volume") == 0).fill_null(False).cast(pl.Int16)
    return (pl.lit(100, pl.Int16) - 10 * missing - 5 * zero_volume).clip(0, 100).cast(pl.Int16).alias("quality_score")


def _failures(frame: pl.DataFrame, today: dt.date) -> pl.DataFrame:
    """(row index, column, check) for every pandera failure of ``frame``; empty when all rows pass."""
    try:
        price_row_schema(today).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.filter(pl.col("index").is_not_null())
        return cases.select(
            pl.col("index").cast(pl.Int64),
            pl.when(pl.col("schema_context") == "Column").then(pl.col("column").cast(pl.String)).alias("column"),
            pl.col("check").cast(pl.String).str.split("(").list.first().alias("check"),
        )
    return pl.DataFrame(schema={"index": pl.Int64, "column": pl.String, "check": pl.String})


def validate_chunks(
    chunks: list[ParsedChunk],
    *,
    today: dt.date,
    seen_keys: list[pl.DataFrame | None] | None = None,
    files: list[int] | None = None,
) -> list[ValidatedChunk]:
    """Validate chunks (of one or many files) together; pandera runs once on their concatenation.

    Args:
        chunks: parsed chunks; each keeps its own parse rejections.
        today: the latest trade date accepted (rows dated after it are rejected as future-dated).
        seen_keys: per chunk, the (symbol, trade_date) keys already accepted from earlier chunks of the same file,
            so a date repeated across chunk boundaries is still a duplicate.
        files: per chunk, the file it belongs to (the same number for chunks of one file), so a date repeated in
            two chunks validated together is a duplicate too; by default each chunk is a file of its own.

    Returns:
        One ``ValidatedChunk`` per input chunk, in order.
    """
    if not chunks:
        return []
    file_of = files if files is not None else range(len(chunks))
    heights = [c.rows.height for c in chunks]
    combined = pl.concat([c.rows for c in chunks], how="vertical").with_columns(
        row_owners(_PART, range(len(chunks)), heights),
        row_owners(_FILE, list(file_of), heights),
    )  # the chunk and file of each row, in one call for hundreds of chunks, not one call each
    combined = combined.with_row_index("_row")
    failures = _failures(combined, today)
    failed = (
        failures.join(combined.select("_row", *_detail_columns()), left_on="index", right_on="_row", how="left")
        .with_columns(_reason().alias("reason"), _values().alias("_values"))
        .group_by("index", maintain_order=True)
        .agg(
            pl.col("column").first().fill_null(pl.col("check").first().replace_strict(CHECK_COLUMNS, default=None)),
            pl.col("check").first(),
            pl.format("{} {}", pl.col("reason").str.join("; "), pl.col("_values").first()).alias("reason"),
        )
    )
    if failed.height:
        combined = combined.join(failed, left_on="_row", right_on="index", how="left", maintain_order="left")
        valid = combined.filter(pl.col("check").is_null())
    else:  # every row passed (the usual case): no join and no filter to copy every column through
        combined = combined.with_columns(pl.lit(None, pl.String).alias(c) for c in ("column", "check", "reason"))
        valid = combined
    duplicate = ~pl.struct(_FILE, "symbol", "trade_date").is_first_distinct()
    valid = valid.with_columns(duplicate.alias("_dup"))
    if seen_keys and any(seen is not None and seen.height for seen in seen_keys):
        return [_split_one(chunk, i, combined, valid, seen_keys[i]) for i, chunk in enumerate(chunks)]
    # Every chunk's rows and rejections are made together, then split by chunk in one pass each: a daily run's
    # hundreds of one-line chunks cost a few polars calls, not a dozen each.
    accepted = _accepted(valid)
    parsed = [
        c.rejected.with_columns(pl.lit(i, pl.Int32).alias(_PART)) for i, c in enumerate(chunks) if c.rejected.height
    ]
    rejected = pl.concat(
        [
            *(frame.select(_PART, *REJECTED_SCHEMA).cast(_PARTED_REJECTED) for frame in parsed),
            combined.filter(pl.col("check").is_not_null()).select(_PART, *REJECTED_SCHEMA).cast(_PARTED_REJECTED),
            _duplicates(valid.filter(pl.col("_dup"))).cast(_PARTED_REJECTED),
        ],
        how="vertical",
    ).sort(_PART, "line_no")
    accepted_parts = split_by_part(accepted, len(chunks), _PART)
    rejected_parts = rejected.partition_by(_PART, as_dict=True, include_key=False) if rejected.height else {}
    no_rejections = rejected.clear().drop(_PART)
    return [
        ValidatedChunk(accepted=accepted_parts[i], rejected=rejected_parts.get((i,), no_rejections))
        for i in range(len(chunks))
    ]


_PARTED_REJECTED: dict[str, pl.DataType] = {_PART: pl.Int32(), **REJECTED_SCHEMA}


def _accepted(valid: pl.DataFrame) -> pl.DataFrame:
    """The rows kept (not duplicates), in the accepted layout with their quality score (``_PART`` kept)."""
    kept = valid.filter(~pl.col("_dup")) if valid.get_column("_dup").any() else valid  # a filter copies each column
    return kept.drop("_row", _FILE, "_dup", "column", "check", "reason", "raw").with_columns(_quality_score())


def _duplicates(rows: pl.DataFrame) -> pl.DataFrame:
    """Rejections of rows whose date an earlier line of their file has (``_PART`` kept)."""
    return rows.select(
        _PART,
        "line_no",
        pl.lit("trade_date").alias("column"),
        pl.lit("unique_date_per_file").alias("check"),
        pl.format("duplicate date {} for {}: an earlier line has it", pl.col("trade_date"), pl.col("symbol")).alias(
            "reason"
        ),
        "raw",
    )


def _split_one(
    chunk: ParsedChunk, i: int, combined: pl.DataFrame, valid: pl.DataFrame, seen: pl.DataFrame | None
) -> ValidatedChunk:
    """Chunk ``i``'s share of a validation, with the keys accepted from earlier chunks of its file (streaming)."""
    part_valid = valid.filter(pl.col(_PART) == i)
    if seen is not None and seen.height:
        earlier = seen.select(pl.struct("symbol", "trade_date")).to_series()
        part_valid = part_valid.with_columns(pl.col("_dup") | pl.struct("symbol", "trade_date").is_in(earlier))
    dups = _duplicates(part_valid.filter(pl.col("_dup"))).drop(_PART)
    rejected = combined.filter((pl.col(_PART) == i) & pl.col("check").is_not_null()).select(*REJECTED_SCHEMA)
    accepted = _accepted(part_valid).drop(_PART)
    all_rejected = pl.concat([chunk.rejected, rejected, dups], how="vertical").cast(REJECTED_SCHEMA).sort("line_no")
    return ValidatedChunk(accepted=accepted, rejected=all_rejected)


def _detail_columns() -> list[str]:
    return ["symbol", "trade_date", "open", "high", "low", "close", "adj_close", "volume"]


def _reason() -> pl.Expr:
    """The failed check as a phrase an operator reads, e.g. ``close: must be > 0``."""
    message = pl.col("check").replace_strict(CHECK_MESSAGES, default=pl.col("check"))
    column = pl.col("column").fill_null(pl.col("check").replace_strict(CHECK_COLUMNS, default="row"))
    return pl.format("{}: {}", column, message)


def _values() -> pl.Expr:
    """The row's values, so the reason stands on its own."""
    names = ("open", "high", "low", "close", "adj_close", "volume", "trade_date")
    return pl.format(
        "(" + ", ".join(f"{n}={{}}" for n in names) + ")",
        *[pl.col(c).cast(pl.String).fill_null("-") for c in names],
    )
