"""A rejected row's raw line in ``mytrader rejects``' table: printed as it is, never as terminal control or markup."""

from __future__ import annotations

import pytest

from mytrader_pipeline.cli.common import print_table
from mytrader_pipeline.cli.rejects import RAW_LINE_WIDTH, shown


@pytest.mark.parametrize(
    ("raw", "printed"),
    [
        ("IBM,[/x],1,2", "IBM,[/x],1,2"),  # rich markup would fail on a closing tag
        ("IBM,[bold]1[/bold]", "IBM,[bold]1[/bold]"),
        ("IBM\x07,1\x08,\x1b[31m", "IBM\\x07,1\\x08,\\x1b[31m"),  # bell, backspace, an ANSI colour
        ("a\u2028b\xa0c", "a\\u2028b\\xa0c"),
    ],
    ids=["closing-tag", "markup", "control-characters", "unicode-separators"],
)
def test_a_raw_line_prints_as_written_with_unprintable_characters_spelled_out(
    raw: str, printed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    print_table([("raw line", "left")], [(shown(raw),)])
    assert [line.rstrip() for line in capsys.readouterr().out.splitlines()] == ["raw line", printed]


def test_a_long_raw_line_is_cut_with_an_ellipsis() -> None:
    cell = shown("x" * 200, RAW_LINE_WIDTH)
    assert cell == "x" * (RAW_LINE_WIDTH - 1) + "…"
    assert shown("x" * RAW_LINE_WIDTH, RAW_LINE_WIDTH) == "x" * RAW_LINE_WIDTH
