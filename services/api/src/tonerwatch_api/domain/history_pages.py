"""History lists (/readings, /counters) by the API's list convention: items and next_cursor.

A history page is a window of points in time order (`sort=occurred_at`, oldest first, or
`sort=-occurred_at`, newest first). A page ends between two instants, never amid the supplies of
one reading, so its cursor is the last point's time (and the resolution of the first page: every
page of one listing has the same resolution even when `resolution=auto` would choose another as
time passes).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar, cast, get_args

from tonerwatch_api.domain.history import Resolution
from tonerwatch_api.listing import ListingError

HistorySort = Literal["occurred_at", "-occurred_at"]
# Points sharing the cursor's time (one per supply, a few counters at one instant) fetched
# besides the page, so the page still fills after they are skipped.
SAME_TIME_SLACK = 256
P = TypeVar("P")


@dataclass(frozen=True)
class HistoryCursor:
    """Where a history page ended, and the listing it belongs to."""

    at: datetime
    resolution: Resolution
    sort: HistorySort

    def encode(self) -> str:
        """Return the opaque cursor."""
        raw = json.dumps(
            {"a": self.at.isoformat(), "r": self.resolution, "s": self.sort},
            separators=(",", ":"),
        )
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str, sort: HistorySort) -> HistoryCursor:
        """Return the cursor a previous page returned; 422 (ListingError) naming cursor if not."""
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            data = json.loads(base64.b64decode(padded, altchars=b"-_", validate=True))
            at = datetime.fromisoformat(data["a"])
            resolution, was = data["r"], data["s"]
        except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
            raise ListingError("cursor", "not a cursor this API returned") from exc
        if at.tzinfo is None or resolution not in get_args(Resolution):
            raise ListingError("cursor", "not a cursor this API returned")
        if was != sort:
            raise ListingError(
                "cursor", f"it continues sort={was!r}; ask with that sort or start over"
            )
        return cls(at, cast(Resolution, resolution), sort)


def history_page(
    fetch: Callable[[datetime, datetime, int], Sequence[P]],
    at: Callable[[P], datetime],
    since: datetime,
    until: datetime,
    limit: int,
    sort: HistorySort,
    resolution: Resolution,
    cursor: HistoryCursor | None,
) -> tuple[list[P], str | None]:
    """Return one page of points from fetch(since, until, how_many) and the cursor of the next.

    fetch returns points in the page's order (oldest first unless sort is -occurred_at). A page
    holds at most limit points, ending at a change of time; only when one instant alone holds
    more than limit points (a printer with more supplies than the limit) is it given whole.
    """
    newest_first = sort == "-occurred_at"
    if cursor is not None:
        if newest_first:
            until = min(until, cursor.at)
        else:
            since = max(since, cursor.at)
    if since > until:
        return [], None
    points = list(fetch(since, until, limit + 1 + SAME_TIME_SLACK))
    if cursor is not None:
        edge = cursor.at
        points = [p for p in points if (at(p) < edge if newest_first else at(p) > edge)]
    if len(points) <= limit:
        return points, None
    last = at(points[limit - 1])
    if at(points[limit]) != last:
        page = points[:limit]
    else:
        page = [p for p in points[:limit] if at(p) != last]
        if not page:
            page = [p for p in points if at(p) == last]
    return page, HistoryCursor(at(page[-1]), resolution, sort).encode()
