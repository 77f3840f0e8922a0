"""Domain errors: the routes and pages answer them 404, 409 or 422."""

from __future__ import annotations


class NotFound(Exception):
    """The thing does not exist for this tenant (another tenant's looks the same: absent)."""


class Conflict(Exception):
    """The change clashes with what is stored; the message says how."""


class Invalid(ValueError):
    """A body field breaks a rule that needs the stored data to check (422, like a schema error)."""

    def __init__(self, field: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def errors(self) -> list[dict[str, object]]:
        """Return the error shaped like FastAPI's request validation errors (loc starts at body)."""
        return [{"loc": ("body", *self.field), "msg": self.message, "type": "value_error"}]
