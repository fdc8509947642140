"""Detecting file changes: between sensor ticks (a cursor of size, mtime, sha256 per file), while a file is read."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from mytrader_pipeline.core.accounting import file_sha256
from mytrader_pipeline.core.discovery import MarketFile
from mytrader_pipeline.core.errors import ErrorClass, IngestError

CURSOR_VERSION = 1


@dataclasses.dataclass(frozen=True)
class FileState:
    """What the sensor last saw of a file: the cheap fingerprint (size, mtime) and the content hash."""

    size: int
    mtime_ns: int
    sha256: str


@dataclasses.dataclass
class FileCursor:
    """A market sensor's memory between ticks (stored by Dagster as JSON, so it survives daemon restarts).

    ``batches`` counts the run batches requested so far; it makes run keys unique when a file's content returns
    to an earlier state (A -> B -> A must reload A).
    """

    files: dict[str, FileState] = dataclasses.field(default_factory=dict)
    batches: int = 0

    def to_json(self) -> str:
        """The cursor string handed to Dagster."""
        files = {key: [s.size, s.mtime_ns, s.sha256] for key, s in sorted(self.files.items())}
        return json.dumps({"v": CURSOR_VERSION, "batches": self.batches, "files": files}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> FileCursor:
        """Inverse of ``to_json``; an absent or unreadable cursor is an empty one (every file is then new)."""
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            if raw.get("v") != CURSOR_VERSION:
                return cls()
            files = {str(k): FileState(int(v[0]), int(v[1]), str(v[2])) for k, v in raw["files"].items()}
            return cls(files=files, batches=int(raw.get("batches", 0)))
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return cls()


@dataclasses.dataclass
class FileChanges:
    """How a market folder differs from the cursor."""

    new: list[str] = dataclasses.field(default_factory=list)
    changed: list[str] = dataclasses.field(default_factory=list)
    touched: list[str] = dataclasses.field(default_factory=list)  # mtime or size moved, content identical
    deleted: list[str] = dataclasses.field(default_factory=list)
    states: dict[str, FileState] = dataclasses.field(default_factory=dict)  # every file present, as seen now

    @property
    def to_load(self) -> list[str]:
        """Files whose content must be (re)loaded."""
        return [*self.new, *self.changed]


Hasher = Callable[[Path], str]


def detect_changes(previous: FileCursor, files: Iterable[MarketFile], hasher: Hasher = file_sha256) -> FileChanges:
    """Compare the files present now with ``previous``: the content is hashed only when size or mtime moved.

    A file whose size and mtime are unchanged is taken as unchanged without reading it (the scraper rewrites
    files, which moves the mtime); a moved fingerprint is confirmed by the SHA-256 before anything is reloaded.
    """
    changes = FileChanges()
    for file in files:
        seen = previous.files.get(file.partition_key)
        if seen is not None and (seen.size, seen.mtime_ns) == (file.size, file.mtime_ns):
            changes.states[file.partition_key] = seen
            continue
        try:
            digest = hasher(file.path)
        except FileNotFoundError:
            continue  # deleted between the scan and the hash: the next tick reports it
        changes.states[file.partition_key] = FileState(file.size, file.mtime_ns, digest)
        if seen is None:
            changes.new.append(file.partition_key)
        elif seen.sha256 != digest:
            changes.changed.append(file.partition_key)
        else:
            changes.touched.append(file.partition_key)
    changes.deleted = sorted(set(previous.files) - set(changes.states))
    return changes


def assert_read_whole(file: MarketFile, bytes_read: int) -> None:
    """Raise ``file_changed`` (retryable) unless ``file`` was read as it was found: ``bytes_read`` is its size, and
    after the read it still has the size and mtime it was found with.

    Called once the last byte is read, before anything read is committed: a file rewritten meanwhile (in place, or
    replaced) would otherwise load as a torn mix of its old and new contents. The next attempt reads it whole.
    """
    try:
        stat = file.path.stat()
        now: tuple[int, int] | None = (stat.st_size, stat.st_mtime_ns)
    except FileNotFoundError:
        now = None
    if bytes_read != file.size or now != (file.size, file.mtime_ns):
        raise IngestError(
            file.source_file,
            f"changed while it was read (found with {file.size} bytes, {bytes_read} read, "
            f"{'gone' if now is None else f'{now[0]} bytes'} after): not loaded, the next attempt reads it whole",
            error_class=ErrorClass.FILE_CHANGED,
        )


def batch_run_key(market: str, sequence: int, keys: Sequence[str], states: dict[str, FileState]) -> str:
    """A deterministic run key: market, batch number, range, and a digest of the range's file contents."""
    digest = hashlib.sha256()
    for key in keys:
        state = states.get(key)
        digest.update(f"{key}\0{state.sha256 if state else '-'}\n".encode())
    return f"{market}:{sequence}:{keys[0]}..{keys[-1]}:{digest.hexdigest()[:16]}"
