"""Finding a market's CSV files under the data root, confined to it; one partition key per file."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from mytrader_pipeline.core.errors import DataPathError, ErrorClass
from mytrader_pipeline.markets import Market

# Dagster partition keys must not contain these; neither may our file names.
_KEY_RE = re.compile(r"^[^/\\,\[\]\n\r\t]+$")


@dataclasses.dataclass(frozen=True)
class MarketFile:
    """One CSV file of a market: its partition key, location, and cheap fingerprint (size, mtime)."""

    market: str
    partition_key: str  # the file name, e.g. "THYAO.csv"
    path: Path
    source_file: str  # relative to the data root, e.g. "BIST/THYAO.csv"
    size: int
    mtime_ns: int


def _confined(data_root: Path, candidate: Path, shown: str) -> Path:
    root = data_root.resolve()
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root):
        raise DataPathError(shown, f"resolves outside the data root {root}", error_class=ErrorClass.OUTSIDE_DATA_ROOT)
    return resolved


def confine(data_root: Path, path: Path | str) -> Path:
    """``path`` (absolute, or relative to ``data_root``) resolved, provided it lies inside ``data_root``."""
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = data_root / candidate
    return _confined(data_root, candidate, str(path))


def file_path(folder: str, file_name: str) -> str:
    """A file as the data root names it (``BIST/X.csv``): the audit's source_file, a dead-letter item's files."""
    return f"{folder}/{file_name}"


def split_file_path(path: str) -> tuple[str, str]:
    """``file_path``'s inverse: (folder, file name)."""
    folder, _, file_name = path.partition("/")
    return folder, file_name


def market_file(data_root: Path, market: Market, partition_key: str) -> MarketFile:
    """The file behind ``partition_key``; ``DataPathError`` if the key is not a plain file name or is missing."""
    source_file = file_path(market.folder, partition_key)
    if not _KEY_RE.match(partition_key) or partition_key in (".", ".."):
        raise DataPathError(source_file, "is not a plain file name", error_class=ErrorClass.OUTSIDE_DATA_ROOT)
    path = _confined(data_root, market.directory(data_root) / partition_key, source_file)
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise DataPathError(source_file, "does not exist (file missing)", error_class=ErrorClass.FILE_MISSING) from exc
    except PermissionError as exc:
        raise DataPathError(source_file, "cannot be read: access denied", error_class=ErrorClass.ACCESS_DENIED) from exc
    return MarketFile(market.code, partition_key, path, source_file, stat.st_size, stat.st_mtime_ns)


def scan_market(data_root: Path, market: Market) -> list[MarketFile]:
    """Every ``*.csv`` file directly in the market's folder, sorted by name; none when the folder is absent."""
    folder = market.directory(data_root)
    if not folder.is_dir():
        return []
    files: list[MarketFile] = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.suffix.lower() != ".csv" or not _KEY_RE.match(entry.name):
            continue
        try:
            found = market_file(data_root, market, entry.name)
        except DataPathError:
            continue  # a symlink escaping the root, or a file deleted while scanning
        if found.path.is_file():
            files.append(found)
    return files
