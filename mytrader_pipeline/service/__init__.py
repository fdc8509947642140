"""The service layer: one API over a running Dagster deployment (GraphQL), shared by the CLI and the REST API."""
