"""The JSON conventions of every model that leaves the process: camelCase names, ISO timestamps."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel

# Timestamps go out as ``datetime.isoformat()`` gives them (``+00:00``, not ``Z``): what the API always answered.
Timestamp = Annotated[dt.datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json")]


class CamelModel(BaseModel):
    """Snake-case fields in Python, camelCase in JSON; either name is accepted on the way in."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)

    def as_json(self) -> dict[str, Any]:
        """The model as JSON-ready data with its camelCase names (what the REST API sends)."""
        return self.model_dump(mode="json", by_alias=True)
