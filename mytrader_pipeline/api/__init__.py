"""The REST API MyTrader's clients already call (``/api/batch-processing/...``), served over the service layer."""
