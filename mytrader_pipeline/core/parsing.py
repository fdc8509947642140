"""One Stock_Scrapper CSV file -> typed polars chunks of canonical rows, plus per-line parse rejections."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl

from mytrader_pipeline.core.appending import AppendRefused, LoadedState
from mytrader_pipeline.core.cell_bounds import (
    CONTROL_CHARACTER_CLASS,
    CONTROL_CHARACTERS,
    FLOAT_COLUMNS,
    MAXIMUMS,
    TEXT_LENGTHS,
)
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
_SAMPLE_LINES = 500  # data lines of a file's first block that decide its date format and decimal mark


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
class RawChunk:
    """A stretch of a file split into its layout's columns, still as text, with how to type it."""

    source: pl.DataFrame  # line_no, raw (the line as read), the layout's columns
    delimiter: str
    quoted: bool  # the text has quote characters: count fields outside quotes
    spec: FormatSpec
    date_format: str
    decimal_comma: bool
    symbol_from_name: str


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
    line_count: int = 0  # lines read, the header included
    ends_with_newline: bool = False
    appended: bool = False  # only the lines after an earlier load's bytes were parsed (``LoadedState``)


def empty_rejected() -> pl.DataFrame:
    """A rejected-rows frame with no rows."""
    return pl.DataFrame(schema=REJECTED_SCHEMA)


def _to_float(expr: pl.Expr, decimal_comma: bool, *, strip: bool = True) -> pl.Expr:
    text = expr.str.strip_chars() if strip else expr
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
        resume: LoadedState | None = None,
    ) -> None:
        """``resume``: what earlier loads read of the file; when the file starts with those bytes, only the lines
        after them are parsed (``meta.appended``), else the whole file is."""
        self.path = path
        self.meta = FileMeta(path=display_path)
        self._configured_date_format = date_format
        self._chunk_bytes = chunk_bytes
        self._hash = hashlib.sha256()
        self._resume = resume
        self._prefix_hash: hashlib._Hash | None = None  # the hash of the first ``resume.size`` bytes, once read
        self._expected_size: int | None = None  # the file's size when first read from

    # -- reading -------------------------------------------------------------------------------------------
    def chunks(self) -> Iterator[ParsedChunk]:
        """Yield typed chunks; raises ``FileFormatError`` for file-level problems, OSError for I/O."""
        for raw in self.raw_chunks():
            typed = type_chunks([raw])[0]
            del raw  # only the typed chunk lives on while the consumer works on it
            yield typed
            del typed

    def raw_chunks(self) -> Iterator[RawChunk]:
        """Yield chunks split into columns but not yet typed (``type_chunks`` types many files in one pass)."""
        with self.path.open("rb") as handle:
            yield from self._raw_from(handle, self._resumed_tail(handle) if self._resume is not None else None)

    def read_small(self) -> list[RawChunk] | PendingTail:
        """The file's raw chunks, as ``raw_chunks`` gives them; but for an append whose new lines are one block
        ending on a line break, those lines read and checked (``AppendRefused`` as ``raw_chunks`` raises it) and not
        parsed yet: ``parse_tails`` parses many files' new lines in one call."""
        with self.path.open("rb") as handle:
            tail = self._resumed_tail(handle) if self._resume is not None else None
            if tail is not None:
                more = self._read(handle)
                if not more and tail.endswith(b"\n"):
                    return self._pending(tail)
                tail += more
            return list(self._raw_from(handle, tail))

    def _raw_from(self, handle: BinaryIO, tail: bytes | None) -> Iterator[RawChunk]:
        """``raw_chunks`` once the loaded bytes were checked: the new lines after them, else the whole file."""
        if tail is not None:
            yield from self._tail_chunks(handle, tail)
            return
        if self._resume is not None:  # the history changed: read the file again, whole
            handle.seek(0)
            blank = FileMeta(path=self.meta.path)  # reset in place: the caller holds ``meta``
            for field in dataclasses.fields(FileMeta):
                setattr(self.meta, field.name, getattr(blank, field.name))
            self._hash = hashlib.sha256()
        first = True
        line_no = 0  # 1-based number of the last line handed out
        for block in self._blocks(handle):
            text, encoding = decode(block, self.meta.path, marked_utf8=self.meta.encoding == "utf-8-sig")
            # polars reads UTF-8 only: re-encode what arrived as Windows-1254 (or with a BOM).
            utf8 = block if encoding == "utf-8" else text.encode("utf-8")
            skip = 0
            if first:
                self.meta.encoding = encoding
                header = text.split("\n", 1)[0].rstrip("\r")
                self.meta.format, self.meta.delimiter = detect_format(header, self.meta.path)
                skip, line_no, first = 1, 1, False
            elif encoding == "cp1254":
                self.meta.encoding = "cp1254"
            lines = text.count("\n") + (0 if text.endswith("\n") else 1) - skip
            first_line_no = line_no + 1
            line_no += max(lines, 0)
            if lines > 0:
                pending = [utf8]
                del block, text, utf8  # the block's bytes and text die before the consumer works on the chunk
                yield self._parse_block(pending.pop(), skip, first_line_no)
        if first:
            raise FileFormatError(self.meta.path, "is empty (0 bytes)", error_class=ErrorClass.EMPTY_FILE)
        self.meta.line_count = line_no
        self.meta.sha256 = self._hash.hexdigest()

    def _resumed_tail(self, handle: BinaryIO) -> bytes | None:
        """Read the bytes loaded so far; the bytes after them when the file still starts with them, else None.

        Also detects what a full read of the file would (format, delimiter, date format, decimal mark) from the same
        header and first lines, so the new lines are typed exactly as a full reload types them.
        """
        state = self._resume
        assert state is not None and state.size is not None and state.line_count is not None
        first: bytes | None = None
        last = b""
        while self.meta.size < state.size:
            last = self._read(handle, mark=state.size)
            if not last:
                return None  # shorter than what was loaded: truncated
            if first is None:
                first = last
        if self._prefix_hash is None or self._prefix_hash.hexdigest() != state.sha256:
            return None
        tail = last[len(last) - (self.meta.size - state.size) :]
        if not tail:
            tail = self._read(handle)
            if not tail:
                return None
        assert first is not None
        cut = first.rfind(b"\n")
        if cut < 0:
            return None  # a header longer than a block: rare enough to read whole
        block = first[: cut + 1]  # the first block a full read parses (its last line may be in the tail)
        if state.encoding != "cp1254":
            # UTF-8 throughout (loaded bytes decoded as UTF-8, new lines refused unless they do): a full read decodes
            # the block as UTF-8, so its header and sampled lines decode alike on their own, not the whole block.
            block = block[: _line_end(block, _SAMPLE_LINES + 1)]
        text, encoding = decode(block, self.meta.path)
        header = text.split("\n", 1)[0].rstrip("\r")
        self.meta.format, self.meta.delimiter = detect_format(header, self.meta.path)
        if self.meta.format.value != state.file_format:
            return None
        self.meta.encoding = state.encoding
        self.meta.appended = True
        if state.date_format is not None and state.decimal_comma is not None and state.line_count > _SAMPLE_LINES:
            # The lines a full read samples are among the loaded bytes: it would detect what the latest load did.
            self.meta.date_format = self._configured_date_format or state.date_format
            self.meta.decimal_comma = state.decimal_comma
            return tail
        utf8 = block if encoding == "utf-8" else text.encode("utf-8")
        sample = utf8[: _line_end(utf8, _SAMPLE_LINES + 1)]  # the header and the lines a full read samples
        self._parse_block(sample, 1, 2)  # sets the date format and decimal mark
        return tail

    def _tail_chunks(self, handle: BinaryIO, tail: bytes) -> Iterator[RawChunk]:
        """The lines after the loaded bytes, numbered on from them; ``AppendRefused`` where they could read otherwise
        within the whole file (see ``core.appending``)."""
        state = self._resume
        assert state is not None and state.line_count is not None
        line_no = state.line_count
        for block in self._blocks(handle, tail):
            lines = self._new_lines(block)
            first_line_no = line_no + 1
            line_no += lines
            yield self._parse_block(block, 0, first_line_no)
        self.meta.line_count = line_no
        self.meta.sha256 = self._hash.hexdigest()

    def _new_lines(self, block: bytes) -> int:
        """The lines of a block of an append's new lines; ``AppendRefused`` where they could read otherwise within
        the whole file (see ``core.appending``)."""
        state = self._resume
        assert state is not None
        if b'"' in block:
            raise AppendRefused(f"{self.meta.path}: the new lines hold quote characters")
        if state.encoding == "cp1254":
            if not block.isascii() or b"\x00" in block:
                raise AppendRefused(f"{self.meta.path}: new lines of a Windows-1254 file that are not plain ASCII")
        else:
            try:
                block.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise AppendRefused(f"{self.meta.path}: new lines that are not UTF-8 in a UTF-8 file") from exc
        return block.count(b"\n") + (0 if block.endswith(b"\n") else 1)

    def _pending(self, tail: bytes) -> PendingTail:
        """An append's new lines (all of the file after the loaded bytes, one block), checked, for ``parse_tails``."""
        state = self._resume
        assert state is not None and state.line_count is not None
        lines = self._new_lines(tail)
        self.meta.line_count = state.line_count + lines
        self.meta.sha256 = self._hash.hexdigest()
        return PendingTail(self, tail, state.line_count + 1, lines)

    def _blocks(self, handle: BinaryIO, start: bytes = b"") -> Iterator[bytes]:
        """Blocks of whole lines (a last line without its newline comes alone, at the end); ``start``: bytes already
        read that come first.

        Between blocks only the unfinished line is kept, so streaming holds one block, not two.
        """
        data, rest = start, b""
        while data or (data := self._read(handle)):
            buffer = rest + data if rest else data
            data = b""
            cut = buffer.rfind(b"\n")
            if cut < 0:  # a line longer than a chunk: read on
                rest = buffer
                continue
            rest = buffer[cut + 1 :]
            pending = [buffer if cut + 1 == len(buffer) else buffer[: cut + 1]]
            del buffer
            yield pending.pop()
        if rest:
            yield rest

    def _read(self, handle: BinaryIO, mark: int | None = None) -> bytes:
        """The next bytes, hashed; the hash of the first ``mark`` bytes is kept when they end in these.

        A read asks for what is left of the file (and a byte more, to see it end), not a whole chunk: reading a 1 MB
        file into a 32 MiB buffer then shrunk costs twice the read itself (fresh pages for the kernel to fill).
        """
        if self._expected_size is None:
            self._expected_size = os.fstat(handle.fileno()).st_size
        left = self._expected_size - self.meta.size
        data = handle.read(min(self._chunk_bytes, left + 1) if left > 0 else self._chunk_bytes)
        before = self.meta.size
        self.meta.size += len(data)
        if mark is not None and before < mark <= self.meta.size:
            view = memoryview(data)
            self._hash.update(view[: mark - before])
            self._prefix_hash = self._hash.copy()
            self._hash.update(view[mark - before :])
        else:
            self._hash.update(data)
        if data:
            self.meta.ends_with_newline = data.endswith(b"\n")
        return data

    # -- parsing -------------------------------------------------------------------------------------------
    def _parse_block(self, data: bytes, skip: int, first_line_no: int) -> RawChunk:
        """Parse a block of whole UTF-8 lines (after ``skip`` header lines) with polars' CSV reader.

        The block is read twice, natively: once as raw lines (kept for rejected rows, and to count fields), once
        split into the layout's columns. Blank lines are skipped; a line with the wrong field count is rejected.
        """
        assert self.meta.format is not None and self.meta.delimiter is not None
        spec = FORMATS[self.meta.format]
        width = len(spec.columns)
        delimiter = self.meta.delimiter
        frame, quoted = _split_lines(data, skip, delimiter, spec, self.meta.path)
        frame = frame.with_columns(
            pl.int_range(first_line_no, first_line_no + frame.height, dtype=pl.Int64).alias("line_no")
        )
        if self.meta.date_format is None or self.meta.decimal_comma is None:
            sample = _prepare(frame.head(500), spec, delimiter, quoted=quoted)
            sample = sample.filter(pl.col("_width") == width)
            if self.meta.decimal_comma is None:
                self.meta.decimal_comma = self._detect_decimal_comma(sample, list(spec.prices.values()))
            if self.meta.date_format is None:
                self.meta.date_format = self._detect_date_format(sample["_date_text"])
        return self._raw_chunk(frame, quoted=quoted)

    def _raw_chunk(self, frame: pl.DataFrame, *, quoted: bool) -> RawChunk:
        """``frame`` (line_no, raw, the layout's columns) of this file as a raw chunk, typed as the file's lines."""
        assert self.meta.format is not None and self.meta.delimiter is not None
        assert self.meta.date_format is not None and self.meta.decimal_comma is not None
        return RawChunk(
            source=frame,
            delimiter=self.meta.delimiter,
            quoted=quoted,
            spec=FORMATS[self.meta.format],
            date_format=self.meta.date_format,
            decimal_comma=self.meta.decimal_comma,
            symbol_from_name=Path(self.meta.path).stem.upper(),
        )

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
        parsed: dict[str, int] = {}
        for name, fmt in DATE_FORMATS.items():
            parsed[name] = values.str.strptime(pl.Date, fmt, strict=False).null_count()
            if parsed[name] == 0 and name not in _AMBIGUOUS:
                return fmt  # fits every sampled date, and no other format can: no need to try the rest
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


def _line_end(data: bytes, lines: int) -> int:
    """The offset just after the first ``lines`` lines of ``data`` (all of it when it holds fewer)."""
    end = -1
    for _ in range(lines):
        end = data.find(b"\n", end + 1)
        if end < 0:
            return len(data)
    return end + 1


# Whole lines are read as one CSV column split on a byte no line holds: a control character, normally the first.
_LINE_SEPARATORS = [chr(c) for c in range(0x1F, 0, -1) if chr(c) not in "\t\n\r"]


def _absent_separator(data: bytes, path: str) -> str:
    """A separator byte that does not occur in ``data`` (a stray control character must not split a line)."""
    for separator in _LINE_SEPARATORS:
        if separator.encode() not in data:
            return separator
    raise FileFormatError(
        path, "holds every ASCII control character: not a CSV text file", error_class=ErrorClass.UNDECODABLE
    )


def _split_lines(data: bytes, skip: int, delimiter: str, spec: FormatSpec, path: str) -> tuple[pl.DataFrame, bool]:
    """A block's lines (after ``skip`` header lines) as ``raw`` and the layout's columns, one row per line, as
    text; and whether quotes were honoured."""
    common = {"has_header": False, "infer_schema": False, "truncate_ragged_lines": True}
    separator = _absent_separator(data, path)
    raw = pl.read_csv(data, separator=separator, quote_char=None, schema={"raw": pl.String}, skip_rows=skip, **common)
    fields, quoted = _read_fields(data, skip, delimiter, spec.columns, raw.height, quoted=b'"' in data)
    return pl.concat([raw, fields], how="horizontal"), quoted


@dataclasses.dataclass
class PendingTail:
    """An append's new lines, read and checked but not parsed (``CsvFileReader.read_small``)."""

    reader: CsvFileReader
    data: bytes  # whole lines, the last ending on a line break
    first_line_no: int
    lines: int

    def parse(self) -> RawChunk:
        """These lines parsed on their own."""
        return self.reader._parse_block(self.data, 0, self.first_line_no)


def parse_tails(tails: list[PendingTail]) -> list[RawChunk]:
    """Each of ``tails`` parsed, in order, as its own ``parse`` gives it; the tails of one layout in one call.

    A daily run's appends are a line or two each, where a parse call's fixed cost is most of the work. The lines
    are read one row per line (blank lines included, dropped later), so the rows split back by each tail's line
    count; should the count not match, each tail of the layout is parsed alone.
    """
    chunks: list[RawChunk | None] = [None] * len(tails)
    layouts: dict[tuple[FileFormat | None, str | None], list[int]] = {}
    for i, tail in enumerate(tails):
        layouts.setdefault((tail.reader.meta.format, tail.reader.meta.delimiter), []).append(i)
    for (layout, delimiter), indexes in layouts.items():
        members = [tails[i] for i in indexes]
        frame: pl.DataFrame | None = None
        if layout is not None and delimiter is not None and len(members) > 1:
            data = b"".join(tail.data for tail in members)
            try:
                frame, quoted = _split_lines(data, 0, delimiter, FORMATS[layout], members[0].reader.meta.path)
            except (FileFormatError, pl.exceptions.PolarsError):
                frame = None
            if frame is not None and (quoted or frame.height != sum(tail.lines for tail in members)):
                frame = None
        if frame is None:
            for i in indexes:
                chunks[i] = tails[i].parse()
            continue
        numbers = [n for tail in members for n in range(tail.first_line_no, tail.first_line_no + tail.lines)]
        frame = frame.with_columns(pl.Series("line_no", numbers, pl.Int64))
        offset = 0
        for i, tail in zip(indexes, members, strict=True):
            chunks[i] = tail.reader._raw_chunk(frame.slice(offset, tail.lines), quoted=False)
            offset += tail.lines
    return [chunk for chunk in chunks if chunk is not None]


def _read_fields(
    data: bytes, skip: int, delimiter: str, columns: tuple[str, ...], lines: int, *, quoted: bool
) -> tuple[pl.DataFrame, bool]:
    """Split a block's lines into ``columns`` as text; returns (fields, whether quotes were honoured).

    polars sizes its rows by the first line it reads, so a short or long first data line (a truncated last line
    that starts a block, say) would fail the whole block: a padding line of the right width goes first instead.
    A stray quote that polars cannot parse makes the block be split without quoting (its bad lines are rejected).
    """
    body = data.split(b"\n", 1)[1] if skip else data
    padded = (delimiter * (len(columns) - 1) + "\n").encode() + body
    schema = {c: pl.String for c in columns}
    options = {"has_header": False, "infer_schema": False, "truncate_ragged_lines": True, "separator": delimiter}
    if quoted:
        try:
            fields = pl.read_csv(padded, quote_char='"', schema=schema, **options).slice(1)
            if fields.height == lines:
                return fields, True
        except pl.exceptions.PolarsError:
            pass
    return pl.read_csv(padded, quote_char=None, schema=schema, **options).slice(1), False


def _prepare(frame: pl.DataFrame, spec: FormatSpec, delimiter: str, *, quoted: bool) -> pl.DataFrame:
    """Drop blank lines; add ``_width`` (fields on the line) and ``_date_text`` (the date without a time)."""
    line = pl.col("raw").str.strip_chars_end("\r")
    unquoted = line.str.replace_all(r'"[^"]*"', "") if quoted else line
    date_text = pl.col(spec.date).str.strip_chars().str.split(" ").list.first().str.split("T").list.first()
    prepared = frame.with_columns(
        line.alias("raw"),
        (unquoted.str.count_matches(delimiter, literal=True) + 1).alias("_width"),
        date_text.alias("_date_text"),
        (pl.col("raw").is_null() | ~pl.col("raw").str.contains(r"\S")).alias("_blank"),
    )
    if prepared.get_column("_blank").any():  # filtering copies every column: only when there is something to drop
        prepared = prepared.filter(~pl.col("_blank"))
    return prepared.drop("_blank")


@dataclasses.dataclass(frozen=True)
class _Problem:
    """One way a typed row can be unfit for the warehouse, tested on the few candidate rows only."""

    column: str  # the source column at fault, as rejected_rows names it
    check: str
    condition: pl.Expr  # true where the row has the problem; never null
    message: pl.Expr  # the reason, for rows where ``condition`` holds


def _text_lengths(spec: FormatSpec) -> dict[str, int]:
    """Canonical text columns of ``spec``'s rows -> the most characters the warehouse column holds."""
    return {name: TEXT_LENGTHS[name] for name in ("symbol", *spec.text_extras) if name in TEXT_LENGTHS}


def _kept_sources(spec: FormatSpec) -> list[str]:
    """The source columns whose cells the warehouse stores (the other BIST columns are read and dropped)."""
    symbol = [spec.symbol] if spec.symbol else []
    return [*symbol, spec.date, *spec.prices.values(), *spec.numeric_extras.values(), *spec.text_extras.values()]


def _excerpt(text: pl.Expr, keep: int = 40) -> pl.Expr:
    return pl.when(text.str.len_chars() > keep).then(text.str.slice(0, keep) + "...").otherwise(text)


def _problems(spec: FormatSpec, date_format: str) -> list[_Problem]:
    """Every problem a typed row of ``spec`` can have, the root causes first (a NUL also makes a cell no number)."""
    numeric = {**spec.prices, **spec.numeric_extras}
    problems = [
        _Problem(
            src,
            "control_character",
            pl.col(src).str.contains_any(CONTROL_CHARACTERS).fill_null(False),
            pl.format(
                "{}: contains control character 0x{}",
                pl.lit(src),
                pl.col(src).str.extract(f"({CONTROL_CHARACTER_CLASS})").str.encode("hex"),
            ),
        )
        for src in _kept_sources(spec)
    ]
    for name, length in _text_lengths(spec).items():
        src = (spec.symbol or name) if name == "symbol" else spec.text_extras[name]
        chars = pl.col(name).str.len_chars()
        problems.append(
            _Problem(
                src,
                "max_length",
                (chars > length).fill_null(False),
                pl.format(
                    "{}: {} characters, more than the {} the warehouse holds: '{}'",
                    pl.lit(src),
                    chars,
                    pl.lit(length),
                    _excerpt(pl.col(name)),
                ),
            )
        )
    problems.append(
        _Problem(
            spec.date,
            "date_format",
            pl.col("trade_date").is_null() & (pl.col("_date_text").fill_null("") != ""),
            pl.format("{}: cannot parse date '{}' as {}", pl.lit(spec.date), pl.col("_date_text"), pl.lit(date_format)),
        )
    )
    problems += [
        _Problem(
            src,
            "numeric",
            pl.col(name).is_null() & (pl.col(src).str.strip_chars().fill_null("") != ""),
            pl.format("{}: not a number: '{}'", pl.lit(src), pl.col(src)),
        )
        for name, src in numeric.items()
    ]
    problems += [
        _Problem(
            src,
            "finite",
            (pl.col(name).is_nan() | pl.col(name).is_infinite()).fill_null(False),
            pl.format("{}: not a finite number: '{}'", pl.lit(src), pl.col(src).str.strip_chars()),
        )
        for name, src in numeric.items()
        if name in FLOAT_COLUMNS
    ]
    problems += [
        _Problem(
            numeric[name],
            "range",
            (pl.col(name).is_finite() & (pl.col(name) > maximum)).fill_null(False),
            pl.format(
                "{}: {} is over {}, the most the warehouse holds",
                pl.lit(numeric[name]),
                pl.col(numeric[name]).str.strip_chars(),
                pl.lit(f"{maximum:.0f}"),
            ),
        )
        for name, maximum in MAXIMUMS.items()
        if name in numeric
    ]
    return problems


def _type_group(raws: list[RawChunk]) -> list[ParsedChunk]:
    """Type chunks sharing layout, date format and decimal mark in one polars pass; one result per chunk."""
    first = raws[0]
    spec = first.spec
    # Each row's chunk and file symbol, made for the whole group at once (not per chunk: a daily run has hundreds).
    part = row_owners("_part", range(len(raws)), [r.source.height for r in raws])
    file_symbol = pl.Series("_file_symbol", [r.symbol_from_name for r in raws], pl.String).gather(part)
    combined = pl.concat([r.source for r in raws], how="vertical").with_columns(part, file_symbol)
    combined = _prepare(combined, spec, first.delimiter, quoted=any(r.quoted for r in raws))
    width = len(spec.columns)
    wrong_width = combined.get_column("_width") != width
    # A filter over files typed together can leave a column whose first chunk is empty, and polars (2.1) panics
    # formatting text over such a column: the few rejected lines are made contiguous first.
    wrong_lines = combined.filter(wrong_width).rechunk()
    bad_width = wrong_lines.select(
        "_part",
        "line_no",
        pl.lit(None, pl.String).alias("column"),
        pl.lit("field_count").alias("check"),
        pl.format("expected {} fields, found {}", pl.lit(width), pl.col("_width")).alias("reason"),
        "raw",
    )
    source = combined.filter(~wrong_width) if wrong_width.any() else combined
    symbol = pl.col(spec.symbol).str.strip_chars() if spec.symbol else pl.lit(None, pl.String)
    exprs: list[pl.Expr] = [
        pl.when(symbol.is_null() | (symbol == "")).then(pl.col("_file_symbol")).otherwise(symbol).alias("symbol"),
        pl.col("_date_text").str.strptime(pl.Date, first.date_format, strict=False).alias("trade_date"),
    ]
    numeric_sources = {**spec.prices, **spec.numeric_extras}
    # Numbers are cast as they stand; the rare cell that needs its whitespace stripped is retyped below.
    exprs += [
        _to_float(pl.col(src), first.decimal_comma, strip=False).alias(name) for name, src in numeric_sources.items()
    ]
    exprs += [pl.col(src).str.strip_chars().alias(name) for name, src in spec.text_extras.items()]
    # Candidates are cheap to find: a null value from a non-null cell, a sum of the numbers that is not finite (NaN
    # or an infinity in some cell; rarely an overflow of finite ones), a number over its column's maximum, text with
    # more bytes than its column holds characters, a control character in a text or date cell. Only they get the
    # exact tests (``_problems``), which forgive whitespace-only cells.
    texts = _text_lengths(spec)
    # A control character in a number makes it no number (a null candidate); only text and dates need looking at.
    texts_and_date = [*([spec.symbol] if spec.symbol else []), spec.date, *spec.text_extras.values()]
    candidate = pl.any_horizontal(
        [pl.col("trade_date").is_null() & pl.col("_date_text").is_not_null()]
        + [pl.col(name).is_null() & pl.col(src).is_not_null() for name, src in numeric_sources.items()]
        + [~pl.sum_horizontal(list(numeric_sources)).is_finite()]
        + [(pl.col(name) > MAXIMUMS[name]).fill_null(False) for name in MAXIMUMS if name in numeric_sources]
        + [(pl.col(name).str.len_bytes() > length).fill_null(False) for name, length in texts.items()]
        + [pl.col(src).str.contains_any(CONTROL_CHARACTERS).fill_null(False) for src in texts_and_date]
    )
    typed = source.with_columns(exprs).with_columns(candidate.alias("_bad"))
    problems = _problems(spec, first.date_format)
    if typed.get_column("_bad").any():
        stripped = [_to_float(pl.col(src), first.decimal_comma).alias(name) for name, src in numeric_sources.items()]
        exact = (
            typed.filter(pl.col("_bad"))
            .with_columns(stripped)
            .with_columns(pl.any_horizontal([p.condition for p in problems]).alias("_bad"))
        )
        typed = pl.concat([typed.filter(~pl.col("_bad")), exact], how="vertical").sort("_part", "line_no")
    bad = typed.filter(pl.col("_bad"))
    if bad.height:
        # A row's column and check are its first problem's; its reason names every problem.
        bad = bad.select(
            "_part",
            "line_no",
            pl.coalesce([pl.when(p.condition).then(pl.lit(p.column)) for p in problems]).alias("column"),
            pl.coalesce([pl.when(p.condition).then(pl.lit(p.check)) for p in problems]).alias("check"),
            pl.concat_list([pl.when(p.condition).then(p.message) for p in problems])
            .list.drop_nulls()
            .list.join("; ")
            .alias("reason"),
            "raw",
        )
    good = typed.filter(~pl.col("_bad")) if bad.height else typed  # a filter copies every column
    missing = [pl.lit(None, pl.String if n == "index_code" else pl.Float64).alias(n) for n in EXTRA_COLUMNS]
    good = good.with_columns([e for e, n in zip(missing, EXTRA_COLUMNS, strict=True) if n not in good.columns])
    good = good.select("_part", "line_no", "raw", "symbol", "trade_date", *PRICE_COLUMNS, *EXTRA_COLUMNS)
    good_parts = split_by_part(good, len(raws))
    bad = pl.concat([bad_width, bad], how="vertical") if bad.height else bad_width
    bad_parts = bad.partition_by("_part", as_dict=True, include_key=False) if bad.height else {}
    results = []
    no_rejections = empty_rejected()
    for i in range(len(raws)):
        rejected = bad_parts.get((i,))
        results.append(
            ParsedChunk(
                rows=good_parts[i],
                rejected=no_rejections if rejected is None else rejected.cast(REJECTED_SCHEMA),
            )
        )
    return results


def row_owners(name: str, owners: Sequence[int], heights: Sequence[int]) -> pl.Series:
    """A column of frames concatenated in order: ``owners[i]`` on each of the ``heights[i]`` rows of the i-th frame
    (which chunk or file a row came from: one column for hundreds of small frames, not a call per frame)."""
    return pl.Series(name, np.repeat(np.asarray(owners, dtype=np.int32), heights))


def split_by_part(rows: pl.DataFrame, parts: int, column: str = "_part") -> list[pl.DataFrame]:
    """``rows`` split by their chunk number (``column``, 0 to ``parts`` - 1) into ``parts`` frames without it, each
    in its rows' order. Rows in chunk order (as the chunks were concatenated, the usual case) split into views of
    ``rows``, not copies; others are gathered by chunk."""
    owners = rows.get_column(column).to_numpy()
    body = rows.drop(column)
    if owners.size and np.any(owners[1:] < owners[:-1]):
        found = rows.partition_by(column, as_dict=True, include_key=False)
        return [found.get((i,), body.clear()) for i in range(parts)]
    counts = np.bincount(owners, minlength=parts)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return [body.slice(int(start), int(count)) for start, count in zip(starts, counts, strict=True)]


def type_chunks(raws: list[RawChunk]) -> list[ParsedChunk]:
    """Type raw chunks (of one or many files), batching those that share a layout; results in input order."""
    groups: dict[tuple[FileFormat, str, bool, str], list[int]] = {}
    for i, raw in enumerate(raws):
        groups.setdefault((raw.spec.format, raw.date_format, raw.decimal_comma, raw.delimiter), []).append(i)
    results: list[ParsedChunk | None] = [None] * len(raws)
    for indexes in groups.values():
        for i, parsed in zip(indexes, _type_group([raws[i] for i in indexes]), strict=True):
            results[i] = parsed
    return [r for r in results if r is not None]


def read_file(path: Path, display_path: str, *, date_format: str | None = None) -> tuple[list[ParsedChunk], FileMeta]:
    """Read a whole (small) file into parsed chunks."""
    reader = CsvFileReader(path, display_path, date_format=date_format)
    chunks = list(reader.chunks())
    return chunks, reader.meta
