"""mytrader-pipeline: Stock_Scrapper CSVs into PostgreSQL as a Dagster asset graph."""
