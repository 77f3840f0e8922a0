"""room on each page for the rows every reading rewrites (PostgreSQL fillfactor)

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07 15:20:00

Every reading updates its printer's row, its supplies' states and its day's network usage. A
PostgreSQL UPDATE writes the new row version on the same page, and adds no index entries, only
when the page has room (a HOT update); pages filled to 100% left most of these updates to go
to another page and into every index of the table (printers: five), and the dead versions
bloated the tables (bench/api_ingest_bench.py's readings, 20,000 of 2,000 printers: 23% of the
printers' and 10% of the supply states' updates HOT; with half of each page free 89% and 91%,
and the PostgreSQL backend's CPU per reading 0.39 -> 0.20 ms). Both tables hold one row per
printer or supply, so the room costs little. The network usage grows a row per printer and day:
30% free. Only new pages are filled to the new mark (no rewrite here, no lock held): a row moves
once to such a page at its next non-HOT update. SQLite has no fillfactor: nothing to do there.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Kept equal to api_metadata's copies of the tables (db/metadata.py, postgresql_with).
FILLFACTOR = {"printers": 50, "supply_states": 50, "network_usage_daily": 70}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, percent in FILLFACTOR.items():
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {percent})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in FILLFACTOR:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
