"""Sample data: a deterministic generator of a realistic Stock_Scrapper CSV tree (clean or deliberately dirty)."""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import math
import random
import string
from pathlib import Path

import polars as pl

from mytrader_pipeline.core.formats import BIST_COLUMNS, FORMATS, STANDARD_COLUMNS, FileFormat
from mytrader_pipeline.markets import load_markets

DEFAULT_END_DATE = datetime.date(2026, 10, 30)
STOCK_YEARS = 20
CRYPTO_YEARS = 8

# Defect kinds of dirty mode, as recorded in ``SampleSummary.defects``. Bad-row kinds touch one row each.
BAD_ROW_KINDS: tuple[str, ...] = (
    "negative_close", "high_below_low", "non_numeric_price", "empty_close",
    "bad_date", "duplicate_date", "future_date", "negative_volume",
)  # fmt: skip
FILE_DEFECT_KINDS: tuple[str, ...] = ("cp1254", "bom", "semicolon_decimal_comma", "truncated", "date_format")
# How many files get each defect family at scale 1 (scaled like file counts, at least one each).
_DEFECT_FILES: dict[str, int] = {
    "cp1254": 1, "bom": 2, "semicolon_decimal_comma": 2, "truncated": 2, "date_format": 2, "bad_rows": 6,
}  # fmt: skip
TURKISH_INDEX_CODE = "XUSİN"  # the cp1254 file's END_ENDEKS_KODU: not encodable as ASCII, invalid as UTF-8 bytes


@dataclasses.dataclass(frozen=True)
class _MarketSpec:
    code: str
    files: int  # at scale 1
    crypto: bool
    symbols: str  # the real symbols, space-separated
    generated_len: int  # letters in generated symbols once ``symbols`` runs out
    suffix: str = ""


_BIST_SYMBOLS = (
    "THYAO GARAN AKBNK ASELS EREGL KCHOL SAHOL SISE TUPRS BIMAS YKBNK ISCTR FROTO TCELL PETKM KOZAL HALKB VAKBN ARCLK "
    "TOASO PGSUS TAVHL EKGYO KRDMD SASA HEKTS ENKAI TTKOM ULKER MGROS DOHOL AEFES OTKAR VESTL TKFEN SODA GUBRF ALARK "
    "KOZAA CCOLA TSKB SKBNK ODAS ZOREN AKSEN AKSA BRISA CIMSA DOAS ENJSA GESAN KONTR OYAKC SMRTG TTRAK AGHOL ALBRK "
    "ANSGR AYGAZ BAGFS BRSAN BUCIM CEMTS DEVA EGEEN GOZDE ISGYO ISMEN KARSN KARTN LOGO MAVI NETAS NTHOL PARSN PRKME "
    "QUAGR SELEC TATGD TMSN TRGYO TURSG VESBE YATAS ZRGYO"
)
_NASDAQ_SYMBOLS = (
    "AAPL MSFT AMZN NVDA GOOGL META TSLA AVGO COST PEP ADBE CSCO NFLX AMD INTC CMCSA TXN QCOM AMGN HON INTU SBUX GILD "
    "MDLZ ADP ISRG BKNG REGN VRTX ADI LRCX MU PYPL KLAC SNPS CDNS MAR ORLY CTAS MNST"
)
_NYSE_SYMBOLS = (
    "IBM KO JNJ PG WMT JPM XOM CVX BAC PFE MRK DIS MCD NKE V MA HD UNH T VZ GE CAT BA MMM GS MS C WFC ABT LLY ORCL CRM "
    "TGT LOW UPS DE BLK AXP SPGI NEE"
)
_MARKETS: tuple[_MarketSpec, ...] = (
    _MarketSpec("BIST", 110, False, _BIST_SYMBOLS, 5),
    _MarketSpec(
        "CRYPTO", 12, True, "BTC ETH BNB SOL XRP ADA DOGE AVAX DOT LINK LTC TRX MATIC ATOM XLM ETC FIL", 4, "USDT"
    ),
    _MarketSpec("NASDAQ", 50, False, _NASDAQ_SYMBOLS, 4),
    _MarketSpec("NYSE", 50, False, _NYSE_SYMBOLS, 3),
)
# Rough first-day prices (8 years back) for the named coins; other symbols draw one.
_CRYPTO_START: dict[str, float] = {
    "BTCUSDT": 8000.0, "ETHUSDT": 400.0, "BNBUSDT": 10.0, "SOLUSDT": 1.5, "XRPUSDT": 0.3, "ADAUSDT": 0.1,
    "DOGEUSDT": 0.003, "AVAXUSDT": 4.0, "DOTUSDT": 3.0, "LINKUSDT": 0.5, "LTCUSDT": 120.0, "TRXUSDT": 0.03,
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SampleSummary:
    """What ``generate_sample`` wrote."""

    root: Path
    files: dict[str, int]  # market code -> files written
    rows: dict[str, int]  # market code -> data lines written (bad, duplicated and truncated rows included)
    dirty_files: list[str]  # sorted relative paths (e.g. "BIST/THYAO.csv") that got defects; empty if not dirty
    defects: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # relative path -> defect kinds

    @property
    def total_rows(self) -> int:
        """Data lines written over all markets."""
        return sum(self.rows.values())


def _symbols(spec: _MarketSpec, count: int) -> list[str]:
    """The first ``count`` symbols of a market; generated ones are seed-independent so file names are stable."""
    out = [symbol + spec.suffix for symbol in spec.symbols.split()[:count]]
    seen = set(out)
    rng = random.Random(f"symbols:{spec.code}")
    while len(out) < count:
        symbol = "".join(rng.choice(string.ascii_uppercase) for _ in range(spec.generated_len)) + spec.suffix
        if symbol not in seen:
            seen.add(symbol)
            out.append(symbol)
    return out


def _dates(end: datetime.date, years: int, weekdays_only: bool) -> pl.Series:
    """Days in (end - years, end], weekdays only for stocks."""
    try:
        start = end.replace(year=end.year - years)
    except ValueError:  # 29 February
        start = end.replace(year=end.year - years, day=28)
    days = pl.date_range(start + datetime.timedelta(days=1), end, "1d", eager=True).alias("Tarih")
    return days.filter(days.dt.weekday() <= 5) if weekdays_only else days


def _ar_walk(rng: random.Random, n: int, sigma: float, phi: float) -> list[float]:
    """An AR(1) path x[t] = phi * x[t-1] + N(0, sigma) starting at 0: a random walk kept near its trend."""
    gauss = rng.gauss
    shocks = [gauss(0.0, sigma) for _ in range(n)]
    shocks[0] = 0.0
    return list(itertools.accumulate(shocks, lambda x, e: phi * x + e))


def _bist_context(seed: int, dates: pl.Series) -> pl.DataFrame:
    """Per-date series shared by every BIST file: the XU100 level and a USD/TRY rate rising ~1.5 -> ~40."""
    rng = random.Random(f"{seed}:BIST:context")
    n = dates.len()
    t = [i / max(n - 1, 1) for i in range(n)]
    usd_noise = _ar_walk(rng, n, 0.004, 0.995)
    idx_noise = _ar_walk(rng, n, 0.014, 0.998)
    lo_usd, hi_usd, lo_idx, hi_idx = math.log(1.5), math.log(40.0), math.log(2500.0), math.log(9000.0)
    return pl.DataFrame({
        "usd": [round(math.exp(lo_usd + (hi_usd - lo_usd) * x**1.8 + e), 4) for x, e in zip(t, usd_noise, strict=True)],
        "idx": [round(math.exp(lo_idx + (hi_idx - lo_idx) * x + e), 2) for x, e in zip(t, idx_noise, strict=True)],
    })  # fmt: skip


def _prices(rng: random.Random, dates: pl.Series, crypto: bool, start: float | None) -> pl.DataFrame:
    """Consistent daily OHLC, adjusted close and volume from a geometric random walk (columns open..volume)."""
    n = dates.len()
    sigma = rng.uniform(0.03, 0.045) if crypto else rng.uniform(0.015, 0.025)
    start = start if start is not None else 10 ** rng.uniform(-1.5 if crypto else 0.7, 2.5)
    dec = 2 if start >= 100 or not crypto else 4 if start >= 1 else 6
    floor = 100 * 10.0**-dec  # keeps prices well above the rounding step, so all stay > 0
    drift = rng.uniform(-0.3, 2.0) / n  # total log drift over the history, spread evenly
    base_volume = 10 ** rng.uniform(6.0, 8.5) / start
    rand, gauss = rng.random, rng.gauss
    dividends = [0.0] * n  # log(1 - yield) on ex-dividend days; adj factor = exp(sum of later ones) <= 1
    if not crypto:
        for i in range(rng.randrange(1, 252), n, 252):
            dividends[i] = math.log(1.0 - rng.uniform(0.0, 0.05))
    raw = pl.DataFrame({
        "Tarih": dates,
        "dev": _ar_walk(rng, n, sigma, 0.9995),
        "gap": [gauss(0.0, sigma * 0.3) for _ in range(n)],
        "up": [rand() for _ in range(n)],
        "down": [rand() for _ in range(n)],
        "at": [rand() for _ in range(n)],
        "vn": [gauss(0.0, 0.5) for _ in range(n)],
        "div": dividends,
    })  # fmt: skip
    o, h, lo, c = pl.col("open"), pl.col("high"), pl.col("low"), pl.col("close")
    factor = (pl.col("div").reverse().cum_sum().reverse() - pl.col("div")).exp().clip(upper_bound=1.0)
    volume = base_volume * pl.col("vn").exp() * (1 + 20 * pl.col("dev").diff().fill_null(0.0).abs())
    return (
        raw.lazy()
        .with_columns(close=(math.log(start) + pl.int_range(pl.len()) * drift + pl.col("dev")).exp().clip(floor))
        .with_columns(c.round(dec), open=(c.shift(1).fill_null(c) * pl.col("gap").exp()).clip(floor).round(dec))
        .with_columns(
            high=(pl.max_horizontal(o, c) * (1 + pl.col("up") * sigma * 0.8)).round(dec),
            low=(pl.min_horizontal(o, c) * (1 - pl.col("down") * sigma * 0.8)).round(dec),
        )
        .with_columns(high=pl.max_horizontal(h, o, c), low=pl.min_horizontal(lo, o, c))
        .with_columns(
            vwap=(lo + (h - lo) * (0.25 + 0.5 * pl.col("at"))).round(dec),
            adj_close=c if crypto else (c * factor).round(dec),
            volume=volume.round(4).clip(0.0001) if crypto else volume.round(0).cast(pl.Int64).clip(1),
        )
        .select("Tarih", "open", "high", "low", "close", "adj_close", "vwap", "volume")
        .collect()
    )


def _standard_frame(symbol: str, prices: pl.DataFrame) -> pl.DataFrame:
    exprs = {
        "HisseKodu": pl.lit(symbol), "Tarih": pl.col("Tarih"), "AcilisFiyati": pl.col("open"),
        "EnYuksek": pl.col("high"), "EnDusuk": pl.col("low"), "KapanisFiyati": pl.col("close"),
        "DuzeltilmisKapanis": pl.col("adj_close"), "Hacim": pl.col("volume"),
    }  # fmt: skip
    return prices.select([exprs[name].alias(name) for name in STANDARD_COLUMNS])


def _bist_frame(
    rng: random.Random, symbol: str, prices: pl.DataFrame, ctx: pl.DataFrame, index_code: str
) -> pl.DataFrame:
    capital = int(round(10 ** rng.uniform(7.5, 10.0), -6))  # paid-in capital, whole millions of TRY
    free_float = round(rng.uniform(0.1, 0.8), 4)
    c, lo, h, v, vwap = pl.col("close"), pl.col("low"), pl.col("high"), pl.col("volume"), pl.col("vwap")
    usd, idx, day, cap = pl.col("usd"), pl.col("idx"), pl.col("Tarih"), c * capital
    exprs = {
        "HGDG_HS_KODU": pl.lit(symbol), "Tarih": day, "DuzeltilmisKapanis": pl.col("adj_close"),
        "AcilisFiyati": pl.col("open"), "EnDusuk": lo, "EnYuksek": h, "Hacim": v,
        "END_ENDEKS_KODU": pl.lit(index_code), "END_TARIH": day, "END_SEANS": pl.lit(2), "END_DEGER": idx,
        "DD_DOVIZ_KODU": pl.lit("USD"), "DD_DT_KODU": pl.lit("A"), "DD_TARIH": day, "DD_DEGER": usd,
        "DOLAR_BAZLI_FIYAT": (c / usd).round(4), "ENDEKS_BAZLI_FIYAT": (c / idx * 100).round(4),
        "DOLAR_HACIM": (v * c / usd).round(2), "SERMAYE": pl.lit(capital), "HG_KAPANIS": c, "HG_AOF": vwap,
        "HG_MIN": lo, "HG_MAX": h, "PD": cap.round(2), "PD_USD": (cap / usd).round(2),
        "HAO_PD": (cap * free_float).round(2), "HAO_PD_USD": (cap * free_float / usd).round(2),
        "HG_HACIM": (v * vwap).round(2), "DOLAR_BAZLI_MIN": (lo / usd).round(4),
        "DOLAR_BAZLI_MAX": (h / usd).round(4), "DOLAR_BAZLI_AOF": (vwap / usd).round(4), "HisseKodu": pl.lit(symbol),
    }  # fmt: skip
    return pl.concat([prices, ctx], how="horizontal").select([exprs[name].alias(name) for name in BIST_COLUMNS])


def _plan_defects(seed: int, scale: float, paths: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    """Pick which files get which defects: one family per file, spread over markets, fixed by ``seed``."""
    rng = random.Random(f"{seed}:dirty")
    shuffled = [rng.sample(paths[code], len(paths[code])) for code in sorted(paths)]
    order = [p for group in itertools.zip_longest(*shuffled) for p in group if p is not None]
    bist_paths = set(paths.get("BIST", []))
    bist = [p for p in order if p in bist_paths]
    plan: dict[str, tuple[str, ...]] = {}
    families = ["cp1254", *rng.sample(list(_DEFECT_FILES)[1:], len(_DEFECT_FILES) - 1)]
    bad_files: list[str] = []
    for family in families:
        pool = [p for p in (bist if family == "cp1254" else order) if p not in plan]
        for path in pool[: max(1, int(_DEFECT_FILES[family] * scale + 0.5))]:
            plan[path] = (family,)
            if family == "bad_rows":
                bad_files.append(path)
    kinds = rng.sample(BAD_ROW_KINDS, len(BAD_ROW_KINDS))
    for j, path in enumerate(bad_files):  # every bad-row kind lands in some file, plus one random extra per file
        chosen = {*kinds[j :: len(bad_files)], rng.choice(BAD_ROW_KINDS)}
        plan[path] = tuple(k for k in BAD_ROW_KINDS if k in chosen)
    return plan


def _inject_bad_rows(text: str, sep: str, file_format: FileFormat, kinds: list[str], rng: random.Random) -> str:
    """Spoil one distinct data row per kind (the duplicate is inserted as an exact copy right after its row)."""
    lines = text.split("\n")  # header, data..., "" after the trailing newline
    column = {name: i for i, name in enumerate(lines[0].split(sep))}
    spec = FORMATS[file_format]
    close, opening, high, low, volume = (column[spec.prices[k]] for k in ("close", "open", "high", "low", "volume"))
    date = column[spec.date]
    duplicate = None
    for kind, row in zip(kinds, sorted(rng.sample(range(2, len(lines) - 2), len(kinds))), strict=True):
        f = lines[row].split(sep)
        if kind == "negative_close":
            f[close] = "-" + f[close]
        elif kind == "high_below_low":
            f[high], f[low] = f[low], f[high] + ("1" if f[low] == f[high] else "")  # appending a digit raises it
        elif kind == "non_numeric_price":
            f[opening] = "n/a"
        elif kind == "empty_close":
            f[close] = ""
        elif kind == "bad_date":
            f[date] = "2020-13-45"
        elif kind == "future_date":
            f[date] = "2099-01-01"
        elif kind == "negative_volume":
            f[volume] = "-" + f[volume]
        elif kind == "duplicate_date":
            duplicate = row
        lines[row] = sep.join(f)
    if duplicate is not None:
        lines.insert(duplicate + 1, lines[duplicate])
    return "\n".join(lines)


def _render(frame: pl.DataFrame, file_format: FileFormat, defects: tuple[str, ...], rng: random.Random) -> bytes:
    """The file's bytes: CSV text with the planned defects applied."""
    sep = ";" if "semicolon_decimal_comma" in defects else ","
    text = frame.write_csv(  # floats keep their ".0" so every file's float columns infer as floats
        separator=sep,
        decimal_comma=sep == ";",
        date_format="%d.%m.%Y" if "date_format" in defects else "%Y-%m-%d",
    )
    bad = [kind for kind in BAD_ROW_KINDS if kind in defects]
    if bad:
        text = _inject_bad_rows(text, sep, file_format, bad, rng)
    if "truncated" in defects:  # cut mid-row: drop the second half of the last line and its newline
        body = text[:-1]
        last = body.rfind("\n") + 1
        text = body[: last + (len(body) - last) // 2]
    if "cp1254" in defects:
        return text.encode("cp1254")
    return (b"\xef\xbb\xbf" if "bom" in defects else b"") + text.encode("utf-8")


def generate_sample(
    root: Path, *, seed: int = 42, scale: float = 1.0, dirty: bool = False, end_date: datetime.date | None = None
) -> SampleSummary:
    """Write a realistic Stock_Scrapper tree (``BIST/``, ``Crypto/``, ``NASDAQ/``, ``NYSE/`` of ``SYMBOL.csv``).

    At scale 1 it writes 110 BIST (32-column), 12 crypto, 50 NASDAQ and 50 NYSE (8-column) files: ~1.1 million rows.
    Stocks hold 20 years of weekdays and crypto 8 years of every day, ending at ``end_date``. ``scale`` multiplies
    the file counts (at least one per market; history length never changes), so scale 2 writes ~2.2 million rows.
    Output is byte-identical for the same arguments; each file's prices depend only on seed, market and symbol.

    Args:
        root: Folder to write into (created if needed); existing files of the same names are overwritten.
        seed: Seed of every random choice.
        scale: Multiplier of the per-market file counts; must be > 0.
        dirty: Add realistic defects to a few files (see ``BAD_ROW_KINDS`` and ``FILE_DEFECT_KINDS``); which
            files got which is in ``SampleSummary.dirty_files`` and ``SampleSummary.defects``.
        end_date: Last trading day; defaults to ``DEFAULT_END_DATE`` (2026-10-30).

    Returns:
        What was written: files and data rows per market code, and the dirty files with their defects.

    Raises:
        ValueError: ``scale`` is not positive.
    """
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    end = end_date or DEFAULT_END_DATE
    registry = load_markets()
    folders = {spec.code: registry.get(spec.code).folder for spec in _MARKETS}
    symbols = {spec.code: _symbols(spec, max(1, int(spec.files * scale + 0.5))) for spec in _MARKETS}
    paths = {code: [f"{folders[code]}/{symbol}.csv" for symbol in symbols[code]] for code in symbols}
    plan = _plan_defects(seed, scale, paths) if dirty else {}
    files: dict[str, int] = {}
    rows: dict[str, int] = {}
    for spec in _MARKETS:
        dates = _dates(end, CRYPTO_YEARS if spec.crypto else STOCK_YEARS, weekdays_only=not spec.crypto)
        ctx = _bist_context(seed, dates) if spec.code == "BIST" else None
        (root / folders[spec.code]).mkdir(parents=True, exist_ok=True)
        files[spec.code] = rows[spec.code] = 0
        for symbol, path in zip(symbols[spec.code], paths[spec.code], strict=True):
            rng = random.Random(f"{seed}:{spec.code}:{symbol}")
            prices = _prices(rng, dates, spec.crypto, _CRYPTO_START.get(symbol) if spec.crypto else None)
            defects = plan.get(path, ())
            if ctx is not None:
                code = TURKISH_INDEX_CODE if "cp1254" in defects else "XU100"
                frame, file_format = _bist_frame(rng, symbol, prices, ctx, code), FileFormat.BIST
            else:
                frame, file_format = _standard_frame(symbol, prices), FileFormat.STANDARD
            data = _render(frame, file_format, defects, random.Random(f"{seed}:{spec.code}:{symbol}:defects"))
            (root / path).write_bytes(data)
            files[spec.code] += 1
            rows[spec.code] += data.count(b"\n") - 1 + (not data.endswith(b"\n"))
    return SampleSummary(root, files, rows, sorted(plan), dict(sorted(plan.items())))
