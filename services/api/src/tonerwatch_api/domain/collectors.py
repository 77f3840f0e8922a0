"""Site collectors of a tenant: the list and whether each is stale."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select

from tonerwatch_api.db.collectors import CollectorRow
from tonerwatch_api.db.models import Site
from tonerwatch_api.listing import Listing, field
from tonerwatch_api.schemas.collectors import CollectorOut

COLLECTORS = Listing(
    fields={
        "id": field(col(CollectorRow.id), "str"),
        "site_id": field(col(CollectorRow.site_id), "str"),
        "last_seen": field(col(CollectorRow.last_seen), "datetime"),
        "printers": field(col(CollectorRow.printers), "int"),
    },
    default="site_id",
)


def collectors_query(tenant_id: str, *, site_id: str | None = None) -> Any:
    """Return the select of the tenant's collectors (by their sites), one site's if given."""
    q = (
        select(CollectorRow)
        .join(Site, col(Site.id) == col(CollectorRow.site_id))
        .where(Site.tenant_id == tenant_id)
    )
    if site_id:
        q = q.where(CollectorRow.site_id == site_id)
    return q


def collector_out(row: CollectorRow, now: datetime, offline_after_s: float) -> CollectorOut:
    """Return the collector's body; stale when offline or silent longer than offline_after_s."""
    silent = now - row.last_seen > timedelta(seconds=offline_after_s)
    return CollectorOut(
        id=row.id,
        site_id=row.site_id,
        version=row.version,
        printers=row.printers,
        queue_depth=row.queue_depth,
        started_at=row.started_at,
        last_seen=row.last_seen,
        offline_since=row.offline_since,
        stale=row.offline_since is not None or silent,
    )
