"""``python -m mytrader_pipeline.cli``: the same as the ``mytrader`` command."""

import sys

from mytrader_pipeline.cli import main

sys.exit(main())
