"""``python -m mytrader_pipeline.cli``: the same as the ``mytrader`` command."""

from mytrader_pipeline.cli import run_and_exit

run_and_exit()
