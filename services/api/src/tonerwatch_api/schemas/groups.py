"""Printer group bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tonerwatch_api.schemas.common import EXAMPLE_PRINTER_ID

MAX_MEMBERS = 10_000  # one PUT; the largest fleets the api is measured with

# --- request and response bodies -----------------------------------------------------------------

MemberId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^\S+$")]


def _one_line(value: str | None) -> str | None:
    """Return value stripped (None when empty); refuse control characters."""
    if value is None:
        return None
    value = value.strip()
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must be one line of printable text")
    return value or None


def _name(value: str) -> str:
    cleaned = _one_line(value)
    if not cleaned:
        raise ValueError("must not be blank")
    return cleaned


GroupName = Annotated[
    str,
    Field(min_length=1, max_length=100, description="Unique in the tenant"),
    AfterValidator(_name),
]
Description = Annotated[str | None, Field(max_length=500), AfterValidator(_one_line)]


class GroupIn(BaseModel):
    """A group to create, optionally with its first members."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Finance floor 3",
                    "description": "The printers Finance answers for",
                    "printer_ids": [EXAMPLE_PRINTER_ID],
                }
            ]
        },
    )
    name: GroupName
    description: Description = None
    printer_ids: list[MemberId] = Field(
        default_factory=list, max_length=MAX_MEMBERS, description="Printers of any site"
    )


class GroupPatch(BaseModel):
    """Changes to a group: a new name, a new description (null clears it)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "Finance (all floors)"}, {"description": None}],
        },
    )
    name: GroupName | None = None
    description: Description = None


class GroupMembersIn(BaseModel):
    """A group's printers, whole: the ones left out leave the group."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"printer_ids": [EXAMPLE_PRINTER_ID, "p-91c0e2b7aa"]}]},
    )
    printer_ids: list[MemberId] = Field(max_length=MAX_MEMBERS)


_GROUP: dict[str, Any] = {
    "id": 3,
    "name": "Finance floor 3",
    "description": "The printers Finance answers for",
    "printers": 2,
    "created_at": "2025-03-10T14:02:11Z",
}


class GroupOut(BaseModel):
    """A group and how many (live) printers it holds."""

    model_config = ConfigDict(json_schema_extra={"examples": [_GROUP]})
    id: int
    name: str
    description: str | None
    printers: int = Field(description="Printers in the group (removed ones not counted)")
    created_at: datetime


class GroupDetailOut(GroupOut):
    """A group with the ids of its printers."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**_GROUP, "printer_ids": [EXAMPLE_PRINTER_ID, "p-91c0e2b7aa"]}]
        }
    )
    printer_ids: list[str] = Field(description="Its live printers, by id")


class GroupPage(BaseModel):
    """One page of groups; pass next_cursor as cursor for the next."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [_GROUP], "next_cursor": "eyJzIjoibmFtZSxpZCIsInYiOlsiRiIsM119"}]
        }
    )
    items: list[GroupOut]
    next_cursor: str | None
