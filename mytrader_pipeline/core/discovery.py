"""Finding a market's CSV files under the data root, confined to it; one partition key per file."""

from __future__ import annotations

import dataclasses
import re
import stat
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
        info = path.stat()
    except FileNotFoundError as exc:
        raise DataPathError(source_file, "does not exist (file missing)", error_class=ErrorClass.FILE_MISSING) from exc
    except PermissionError as exc:
        raise DataPathError(source_file, "cannot be read: access denied", error_class=ErrorClass.ACCESS_DENIED) from exc
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a fifo" if stat.S_ISFIFO(info.st_mode) else "special"
        raise DataPathError(source_file, f"is {kind}, not a regular file", error_class=ErrorClass.NOT_A_FILE)
    return MarketFile(market.code, partition_key, path, source_file, info.st_size, info.st_mtime_ns)


@dataclasses.dataclass(frozen=True)
class UnloadableEntry:
    """An entry of a market folder named like a CSV file that cannot be loaded, and why (a classified error)."""

    market: str
    name: str  # the entry's name in the market folder, e.g. "A,B.csv"
    source_file: str  # relative to the data root, e.g. "BIST/A,B.csv"
    error: DataPathError


@dataclasses.dataclass(frozen=True)
class MarketEntries:
    """Every ``*.csv`` entry of a market folder: the loadable files and the entries that cannot be loaded."""

    files: list[MarketFile]
    unloadable: list[UnloadableEntry]


def _classify_entry(data_root: Path, market: Market, entry: Path) -> MarketFile | UnloadableEntry | None:
    """The loadable file behind ``entry``, or why it cannot be loaded; None when it vanished while scanning."""
    source_file = file_path(market.folder, entry.name)

    def unloadable(reason: str, error_class: ErrorClass) -> UnloadableEntry:
        return UnloadableEntry(
            market.code, entry.name, source_file, DataPathError(source_file, reason, error_class=error_class)
        )

    if not _KEY_RE.match(entry.name):
        return unloadable(
            "has a name a partition key cannot hold (no comma, bracket, slash, tab or line break)",
            ErrorClass.INVALID_FILE_NAME,
        )
    try:
        return market_file(data_root, market, entry.name)
    except DataPathError as exc:
        if exc.error_class is not ErrorClass.FILE_MISSING:
            return UnloadableEntry(market.code, entry.name, source_file, exc)
        if not entry.is_symlink():
            return None  # deleted between listing and looking: no longer an entry of the folder
        return unloadable("is a symbolic link to nothing (dangling link)", ErrorClass.NOT_A_FILE)
    except RuntimeError:  # Path.resolve on a symlink loop
        return unloadable("is a symbolic link loop", ErrorClass.NOT_A_FILE)


def scan_market_entries(data_root: Path, market: Market) -> MarketEntries:
    """Every ``*.csv`` entry directly in the market's folder, sorted by name, sorted into loadable and not.

    Entries whose name does not end in ``.csv`` are not the market's data and are ignored. Unreadable files are
    loadable here: reading them fails with ``access_denied``, recorded like any failed file.
    """
    folder = market.directory(data_root)
    if not folder.is_dir():
        return MarketEntries([], [])
    files: list[MarketFile] = []
    unloadable: list[UnloadableEntry] = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.suffix.lower() != ".csv":
            continue
        try:
            found = _classify_entry(data_root, market, entry)
        except PermissionError as exc:  # a link into a folder we may not look into
            error = DataPathError(
                file_path(market.folder, entry.name), f"cannot be read: {exc}", error_class=ErrorClass.ACCESS_DENIED
            )
            found = UnloadableEntry(market.code, entry.name, error.path, error)
        if isinstance(found, MarketFile):
            files.append(found)
        elif found is not None:
            unloadable.append(found)
    return MarketEntries(files, unloadable)


def scan_market(data_root: Path, market: Market) -> list[MarketFile]:
    """Every loadable ``*.csv`` file directly in the market's folder, sorted by name; none when it is absent."""
    return scan_market_entries(data_root, market).files
