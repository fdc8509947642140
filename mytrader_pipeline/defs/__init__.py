"""Dagster definitions: thin shells over ``mytrader_pipeline.core``."""
