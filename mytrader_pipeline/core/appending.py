"""Append-aware loading: what a file's loads so far read, and when its new content may load as just the new lines.

Stock_Scrapper rewrites each file daily with its whole history plus, usually, one new row. A file whose content
starts with exactly the bytes loaded so far (same length, same SHA-256) and whose earlier content ended on a line
break is loaded as an *append*: only the lines after those bytes are parsed, validated and loaded, numbered on from
the lines already read. Anything else (a rewritten or corrected row, a truncated file, another encoding or header,
a last line that was unfinished) is loaded whole, as before.

An append gives the warehouse exactly what a full reload of the file would, because every rule that spans rows is
kept: the format, encoding, date format and decimal mark are what a full read of the new file detects (from the same
first lines: when the lines it samples are all among the bytes loaded before, the latest load's detection is reused
rather than sampled again), and the few cases where the new lines could read differently within a whole file fall
back to the full load (``AppendRefused``): new lines in another encoding than the file's, with quote characters (a
block's quoting is decided for the block as a whole), or with an accepted date not after every date loaded so far
(it could repeat one, and a repeated date is rejected as a duplicate), and files whose loads so far rejected a row
as future-dated (today a full reload may accept it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt


class AppendRefused(Exception):
    """The file's new content cannot load as an append to its earlier loads: it must be loaded whole."""


@dataclasses.dataclass(frozen=True)
class LoadedState:
    """What the loads of one file read so far: its latest succeeded import and the chain it ends.

    The chain is the file's latest full load and the appends after it; together they loaded the file's bytes as
    they were at the latest import (``size`` bytes, SHA-256 ``sha256``).
    """

    import_id: int  # the latest succeeded import (an append extends it)
    sha256: str | None
    size: int | None
    line_count: int | None  # lines in those bytes, the header included (None: loaded before appends existed)
    ends_with_newline: bool | None
    encoding: str | None
    file_format: str | None
    date_max: dt.date | None  # the latest trade date the chain accepted
    future_rejections: bool  # the chain rejected a row as future-dated
    date_format: str | None = None  # what the latest load detected from the file's first lines (None: not kept)
    decimal_comma: bool | None = None

    def resumable(self, size: int) -> bool:
        """Whether a file now ``size`` bytes long may be an append to this state (its bytes are checked on reading)."""
        return (
            self.line_count is not None
            and bool(self.ends_with_newline)
            and self.size is not None
            and self.sha256 is not None
            and self.encoding is not None
            and self.file_format is not None
            and size > self.size
            and not self.future_rejections
        )


def bytes_to_parse(state: LoadedState | None, size: int) -> int:
    """About what loading a file now ``size`` bytes long parses: the bytes after those ``state`` loaded when it may
    be an append, else all of them."""
    if state is not None and state.size is not None and state.resumable(size):
        return size - state.size
    return size
