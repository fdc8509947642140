"""``python -m mytrader_pipeline.cli``: the same as the ``mytrader`` command."""

from mytrader_pipeline.cli.process import run

run()
