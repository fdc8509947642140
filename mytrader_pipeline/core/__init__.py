"""Pure domain code: formats, parsing, validation, loading and accounting; never imports dagster."""
