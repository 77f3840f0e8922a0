"""Pages of history: supply levels and page counters by the list convention (items, next_cursor)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from tonerwatch_api.schemas.printers import CounterOut, ReadingOut


def _example(model: type[BaseModel]) -> dict[str, Any]:
    extra = model.model_config.get("json_schema_extra")
    assert isinstance(extra, dict)
    examples = extra["examples"]
    assert isinstance(examples, list)
    return {"items": examples[:1], "next_cursor": "eyJhIjoiMjAyNS0wMy0xNFQwODo1NToxMiJ9"}


class ReadingPage(BaseModel):
    """One page of supply levels; pass next_cursor as cursor (same since, until, sort) for the next."""

    model_config = ConfigDict(json_schema_extra={"examples": [_example(ReadingOut)]})
    items: list[ReadingOut]
    next_cursor: str | None


class CounterPage(BaseModel):
    """One page of page counters; pass next_cursor as cursor (same since, until, sort) for the next."""

    model_config = ConfigDict(json_schema_extra={"examples": [_example(CounterOut)]})
    items: list[CounterOut]
    next_cursor: str | None
