"""One Stock_Scrapper CSV file -> typed polars chunks of canonical rows, plus per-line parse rejections."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import polars as pl

from mytrader_pipeline.core.errors import ErrorClass, FileFormatError
from mytrader_pipeline.core.formats import (
    DATE_FORMATS,
    EXTRA_COLUMNS,
    FORMATS,
    PRICE_COLUMNS,
    FileFormat,
    FormatSpec,
    decode,
    detect_format,
)

DEFAULT_CHUNK_BYTES = 32 * 1024 * 1024
REJECTED_SCHEMA: dict[str, pl.DataType] = {
    "line_no": pl.Int64(),
    "column": pl.String(),
    "check": pl.String(),
    "reason": pl.String(),
    "raw": pl.String(),
}
_AMBIGUOUS = {"dd/MM/yyyy", "MM/dd/yyyy"}


@dataclasses.dataclass
class ParsedChunk:
    """Rows parsed from one stretch of a file.

    ``rows`` holds canonical typed columns (``symbol``, ``trade_date``, prices, BIST extras) with ``line_no`` and
    ``raw``; ``rejected`` holds lines that could not be parsed (``REJECTED_SCHEMA``).
    """

    rows: pl.DataFrame
    rejected: pl.DataFrame

    @property
    def rows_read(self) -> int:
        """Data lines this chunk read (parsed or rejected)."""
        return self.rows.height + self.rejected.height


@dataclasses.dataclass
class FileMeta:
    """What was learnt about a file while reading it."""

    path: str
    format: FileFormat | None = None
    encoding: str | None = None
    delimiter: str | None = None
    decimal_comma: bool | None = None
    date_format: str | None = None
    size: int = 0
    sha256: str = ""


def empty_rejected() -> pl.DataFrame:
    """A rejected-rows frame with no rows."""
    return pl.DataFrame(schema=REJECTED_SCHEMA)


def _to_float(expr: pl.Expr, decimal_comma: bool) -> pl.Expr:
    text = expr.str.strip_chars()
    if decimal_comma:
        text = text.str.replace_all(".", "", literal=True).str.replace_all(",", ".", literal=True)
    return text.cast(pl.Float64, strict=False)


class CsvFileReader:
    """Streams one CSV file as parsed chunks, detecting encoding, delimiter, format and date format once."""

    def __init__(
        self,
        path: Path,
        display_path: str,
        *,
        date_format: str | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        self.path = path
        self.meta = FileMeta(path=display_path)
        self._configured_date_format = date_format
        self._chunk_bytes = chunk_bytes
        self._hash = hashlib.sha256()

    # -- reading -------------------------------------------------------------------------------------------
    def chunks(self) -> Iterator[ParsedChunk]:
        """Yield parsed chunks; raises ``FileFormatError`` for file-level problems, OSError for I/O."""
        with self.path.open("rb") as handle:
            first = True
            line_no = 0  # 1-based number of the last line handed out
            for block in self._blocks(handle):
                text, encoding = decode(block, self.meta.path)
                lines = text.split("\n")
                if first:
                    self.meta.encoding = encoding
                    header = lines[0].rstrip("\r")
                    self.meta.format, self.meta.delimiter = detect_format(header, self.meta.path)
                    lines = lines[1:]
                    line_no = 1
                    first = False
                elif encoding == "cp1254":
                    self.meta.encoding = "cp1254"
                if lines and lines[-1] == "":
                    lines.pop()  # the text after the final newline
                if lines:
                    yield self._parse_lines(lines, line_no + 1)
                line_no += len(lines)
            if first:
                raise FileFormatError(self.meta.path, "is empty (0 bytes)", error_class=ErrorClass.EMPTY_FILE)
        self.meta.sha256 = self._hash.hexdigest()

    def _blocks(self, handle: BinaryIO) -> Iterator[bytes]:
        """Blocks of whole lines (the last may lack its newline)."""
        buffer = self._read(handle)
        while buffer:
            following = self._read(handle)
            if not following:
                yield buffer  # the last block keeps a final line that lacks its newline
                return
            cut = buffer.rfind(b"\n")
            if cut < 0:
                buffer += following
                continue
            yield buffer[: cut + 1]
            buffer = buffer[cut + 1 :] + following

    def _read(self, handle: BinaryIO) -> bytes:
        data = handle.read(self._chunk_bytes)
        self.meta.size += len(data)
        self._hash.update(data)
        return data

    # -- parsing -------------------------------------------------------------------------------------------
    def _parse_lines(self, lines: list[str], first_line_no: int) -> ParsedChunk:
        assert self.meta.format is not None and self.meta.delimiter is not None
        spec = FORMATS[self.meta.format]
        width = len(spec.columns)
        frame = (
            pl.DataFrame({"raw": lines}, schema={"raw": pl.String})
            .with_row_index("line_no", offset=first_line_no)
            .with_columns(pl.col("line_no").cast(pl.Int64), pl.col("raw").str.strip_chars_end("\r"))
            .filter(pl.col("raw").str.strip_chars() != "")
        )
        quoted = frame["raw"].str.contains('"', literal=True).any()
        fields = pl.col("raw").str.split(self.meta.delimiter)
        frame = frame.with_columns(fields.alias("_fields"))
        if quoted:
            frame = frame.with_columns(pl.col("_fields").list.eval(pl.element().str.strip_chars('"')))
        frame = frame.with_columns(pl.col("_fields").list.len().alias("_width"))
        bad_width = frame.filter(pl.col("_width") != width).select(
            "line_no",
            pl.lit(None, pl.String).alias("column"),
            pl.lit("field_count").alias("check"),
            pl.format(
                "expected {} fields, found {}" + (" (quoted delimiter?)" if quoted else ""),
                pl.lit(width),
                pl.col("_width"),
            ).alias("reason"),
            "raw",
        )
        frame = frame.filter(pl.col("_width") == width)
        source = frame.select(
            "line_no",
            "raw",
            *[pl.col("_fields").list.get(i).alias(name) for i, name in enumerate(spec.columns)],
        )
        if self.meta.decimal_comma is None:
            self.meta.decimal_comma = self._detect_decimal_comma(source, list(spec.prices.values()))
        date_text = pl.col(spec.date).str.strip_chars().str.split(" ").list.first().str.split("T").list.first()
        source = source.with_columns(date_text.alias("_date_text"))
        if self.meta.date_format is None:
            self.meta.date_format = self._detect_date_format(source["_date_text"])
        typed, rejected = self._type_columns(source, spec)
        return ParsedChunk(rows=typed, rejected=pl.concat([bad_width, rejected], how="vertical"))

    def _detect_decimal_comma(self, source: pl.DataFrame, price_columns: list[str]) -> bool:
        if self.meta.delimiter == ",":
            return False
        sample = source.head(1000).select(price_columns)
        return bool(sample.select(pl.any_horizontal(pl.all().str.contains(r"^\s*-?\d+,\d+\s*$")).any()).item())

    def _detect_date_format(self, dates: pl.Series) -> str:
        if self._configured_date_format:
            return self._configured_date_format
        values = dates.filter(dates.is_not_null() & (dates != ""))
        if values.is_empty():
            return DATE_FORMATS["yyyy-MM-dd"]
        parsed = {
            name: values.str.strptime(pl.Date, fmt, strict=False).null_count() for name, fmt in DATE_FORMATS.items()
        }
        best = min(parsed.values())
        winners = [name for name, misses in parsed.items() if misses == best]
        if best == values.len():
            return DATE_FORMATS["yyyy-MM-dd"]  # nothing parses: every row is rejected for its date
        if len(winners) > 1 and set(winners) >= _AMBIGUOUS:
            raise FileFormatError(
                self.meta.path,
                "dates fit both dd/MM/yyyy and MM/dd/yyyy; name the market's date_format in the market config",
                column="Tarih",
                error_class=ErrorClass.AMBIGUOUS_DATES,
            )
        return DATE_FORMATS[winners[0]]

    def _type_columns(self, source: pl.DataFrame, spec: FormatSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
        assert self.meta.date_format is not None
        decimal_comma = bool(self.meta.decimal_comma)
        symbol_from_name = Path(self.meta.path).stem.upper()
        symbol = pl.col(spec.symbol).str.strip_chars() if spec.symbol else pl.lit(None, pl.String)
        exprs: list[pl.Expr] = [
            pl.when(symbol.is_null() | (symbol == "")).then(pl.lit(symbol_from_name)).otherwise(symbol).alias("symbol"),
            pl.col("_date_text").str.strptime(pl.Date, self.meta.date_format, strict=False).alias("trade_date"),
        ]
        numeric_sources = {**spec.prices, **spec.numeric_extras}
        exprs += [_to_float(pl.col(src), decimal_comma).alias(name) for name, src in numeric_sources.items()]
        exprs += [pl.col(src).str.strip_chars().alias(name) for name, src in spec.text_extras.items()]
        typed = source.with_columns(exprs)
        # A cell that had text but did not convert is a parse failure for that column.
        failures: list[pl.Expr] = [
            pl.when(pl.col("trade_date").is_null() & (pl.col("_date_text").fill_null("") != "")).then(
                pl.format("Tarih: cannot parse date '{}' as {}", pl.col("_date_text"), pl.lit(self.meta.date_format))
            )
        ]
        failures += [
            pl.when(pl.col(name).is_null() & (pl.col(src).str.strip_chars().fill_null("") != "")).then(
                pl.format("{}: not a number: '{}'", pl.lit(src), pl.col(src))
            )
            for name, src in numeric_sources.items()
        ]
        typed = typed.with_columns(pl.concat_list(failures).list.drop_nulls().alias("_errors"))
        bad = typed.filter(pl.col("_errors").list.len() > 0)
        rejected = bad.select(
            "line_no",
            pl.col("_errors").list.first().str.split(":").list.first().alias("column"),
            pl.when(pl.col("_errors").list.first().str.starts_with("Tarih:"))
            .then(pl.lit("date_format"))
            .otherwise(pl.lit("numeric"))
            .alias("check"),
            pl.col("_errors").list.join("; ").alias("reason"),
            "raw",
        )
        canonical = ["line_no", "raw", "symbol", "trade_date", *PRICE_COLUMNS, *EXTRA_COLUMNS]
        good = typed.filter(pl.col("_errors").list.len() == 0)
        for name in EXTRA_COLUMNS:
            if name not in good.columns:
                dtype = pl.String if name == "index_code" else pl.Float64
                good = good.with_columns(pl.lit(None, dtype).alias(name))
        return good.select(canonical), rejected


def read_file(path: Path, display_path: str, *, date_format: str | None = None) -> tuple[list[ParsedChunk], FileMeta]:
    """Read a whole (small) file into parsed chunks."""
    reader = CsvFileReader(path, display_path, date_format=date_format)
    chunks = list(reader.chunks())
    return chunks, reader.meta
