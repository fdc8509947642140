"""The Stock_Scrapper CSV formats: their headers, column maps, and detection of encoding, delimiter and format."""

from __future__ import annotations

import dataclasses
import enum

from mytrader_pipeline.core.errors import ErrorClass, FileFormatError

BIST_COLUMNS: tuple[str, ...] = (
    "HGDG_HS_KODU", "Tarih", "DuzeltilmisKapanis", "AcilisFiyati", "EnDusuk", "EnYuksek", "Hacim",
    "END_ENDEKS_KODU", "END_TARIH", "END_SEANS", "END_DEGER", "DD_DOVIZ_KODU", "DD_DT_KODU", "DD_TARIH",
    "DD_DEGER", "DOLAR_BAZLI_FIYAT", "ENDEKS_BAZLI_FIYAT", "DOLAR_HACIM", "SERMAYE", "HG_KAPANIS", "HG_AOF",
    "HG_MIN", "HG_MAX", "PD", "PD_USD", "HAO_PD", "HAO_PD_USD", "HG_HACIM", "DOLAR_BAZLI_MIN",
    "DOLAR_BAZLI_MAX", "DOLAR_BAZLI_AOF", "HisseKodu",
)  # fmt: skip
STANDARD_COLUMNS: tuple[str, ...] = (
    "HisseKodu", "Tarih", "AcilisFiyati", "EnYuksek", "EnDusuk", "KapanisFiyati", "DuzeltilmisKapanis", "Hacim",
)  # fmt: skip

# Canonical price columns, in the order the warehouse stores them.
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "adj_close", "volume")

# BIST extras kept as typed, queryable warehouse columns (canonical name -> source column).
BIST_EXTRA_NUMERIC: dict[str, str] = {
    "index_value": "END_DEGER",
    "usd_try": "DD_DEGER",
    "usd_price": "DOLAR_BAZLI_FIYAT",
    "index_based_price": "ENDEKS_BAZLI_FIYAT",
    "usd_volume": "DOLAR_HACIM",
    "paid_in_capital": "SERMAYE",
    "vwap": "HG_AOF",
    "market_cap": "PD",
    "market_cap_usd": "PD_USD",
    "free_float_market_cap": "HAO_PD",
    "free_float_market_cap_usd": "HAO_PD_USD",
    "usd_low": "DOLAR_BAZLI_MIN",
    "usd_high": "DOLAR_BAZLI_MAX",
    "usd_vwap": "DOLAR_BAZLI_AOF",
}
BIST_EXTRA_TEXT: dict[str, str] = {"index_code": "END_ENDEKS_KODU"}
EXTRA_COLUMNS: tuple[str, ...] = (*BIST_EXTRA_TEXT, *BIST_EXTRA_NUMERIC)


class FileFormat(enum.Enum):
    """The two layouts Stock_Scrapper writes."""

    BIST = "bist"
    STANDARD = "standard"
    STANDARD_NO_SYMBOL = "standard_no_symbol"  # the 8-column layout without HisseKodu: symbol from the file name


@dataclasses.dataclass(frozen=True)
class FormatSpec:
    """How one layout's source columns map onto canonical columns."""

    format: FileFormat
    columns: tuple[str, ...]
    symbol: str | None
    date: str
    prices: dict[str, str]  # canonical price column -> source column
    numeric_extras: dict[str, str]
    text_extras: dict[str, str]


FORMATS: dict[FileFormat, FormatSpec] = {
    FileFormat.BIST: FormatSpec(
        format=FileFormat.BIST,
        columns=BIST_COLUMNS,
        symbol="HisseKodu",
        date="Tarih",
        prices={
            "open": "AcilisFiyati",
            "high": "EnYuksek",
            "low": "EnDusuk",
            "close": "HG_KAPANIS",
            "adj_close": "DuzeltilmisKapanis",
            "volume": "Hacim",
        },
        numeric_extras=BIST_EXTRA_NUMERIC,
        text_extras=BIST_EXTRA_TEXT,
    ),
    FileFormat.STANDARD: FormatSpec(
        format=FileFormat.STANDARD,
        columns=STANDARD_COLUMNS,
        symbol="HisseKodu",
        date="Tarih",
        prices={
            "open": "AcilisFiyati",
            "high": "EnYuksek",
            "low": "EnDusuk",
            "close": "KapanisFiyati",
            "adj_close": "DuzeltilmisKapanis",
            "volume": "Hacim",
        },
        numeric_extras={},
        text_extras={},
    ),
}
FORMATS[FileFormat.STANDARD_NO_SYMBOL] = dataclasses.replace(
    FORMATS[FileFormat.STANDARD], format=FileFormat.STANDARD_NO_SYMBOL, columns=STANDARD_COLUMNS[1:], symbol=None
)

# Date formats accepted, in the order ties are reported; the names are the .NET spellings operators know.
DATE_FORMATS: dict[str, str] = {
    "yyyy-MM-dd": "%Y-%m-%d",
    "dd.MM.yyyy": "%d.%m.%Y",
    "dd-MM-yyyy": "%d-%m-%Y",
    "dd/MM/yyyy": "%d/%m/%Y",
    "MM/dd/yyyy": "%m/%d/%Y",
    "yyyy/MM/dd": "%Y/%m/%d",
    "yyyyMMdd": "%Y%m%d",
}


@dataclasses.dataclass(frozen=True)
class Dialect:
    """What was detected about one file's text."""

    encoding: str  # "utf-8", "utf-8-sig" or "cp1254"
    delimiter: str
    decimal_comma: bool
    format: FileFormat


def decode(data: bytes, path: str, *, marked_utf8: bool = False) -> tuple[str, str]:
    """Decode file bytes as UTF-8 (with or without BOM), else Windows-1254; returns (text, encoding).

    ``marked_utf8``: the file began with a UTF-8 byte-order mark, so these later bytes of it must be UTF-8 too.
    """
    starts_with_bom = not marked_utf8 and data.startswith(b"\xef\xbb\xbf")
    if marked_utf8 or starts_with_bom:
        try:
            if starts_with_bom:
                return data[3:].decode("utf-8"), "utf-8-sig"
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError as exc:
            raise FileFormatError(
                path, f"has a UTF-8 byte-order mark but is not valid UTF-8: {exc}", error_class=ErrorClass.UNDECODABLE
            ) from exc
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # A stray NUL in a cell is a row problem (rejected while typing); a binary file is full of them.
    if data.count(b"\x00") * 100 > len(data):
        raise FileFormatError(
            path, "is binary (over 1% NUL bytes), not a CSV text file", error_class=ErrorClass.UNDECODABLE
        )
    # Windows-1254 leaves 0x81, 0x8D, 0x8E, 0x8F, 0x90, 0x9D, 0x9E undefined: such bytes mean another encoding.
    try:
        return data.decode("cp1254"), "cp1254"
    except UnicodeDecodeError as exc:
        raise FileFormatError(
            path, f"is neither UTF-8 nor Windows-1254 text: {exc}", error_class=ErrorClass.UNDECODABLE
        ) from exc


def detect_format(header_line: str, path: str) -> tuple[FileFormat, str]:
    """Detect (format, delimiter) from a header line; ``FileFormatError`` when it is not a known header."""
    line = header_line.strip().lstrip("\ufeff")
    if not line:
        raise FileFormatError(path, "is empty (no header line)", line=1, error_class=ErrorClass.EMPTY_FILE)
    delimiter = ";" if line.count(";") > line.count(",") else ","
    names = tuple(name.strip().strip('"') for name in line.split(delimiter))
    for spec in FORMATS.values():
        if names == spec.columns:
            return spec.format, delimiter
    by_width = {len(spec.columns): spec for spec in FORMATS.values()}
    spec = by_width.get(len(names))
    if spec is not None:
        wrong = [f"{got!r} (expected {want!r})" for got, want in zip(names, spec.columns, strict=True) if got != want]
        detail = f"{spec.format.value} header with unexpected column(s): {', '.join(wrong[:5])}"
    else:
        detail = (
            f"unknown header with {len(names)} column(s) starting {', '.join(names[:4])!s}; expected the "
            f"{len(BIST_COLUMNS)}-column BIST or the {len(STANDARD_COLUMNS)}-column standard Stock_Scrapper header"
        )
    raise FileFormatError(path, detail, line=1)
