"""REST /dead-letters: events a consumer set aside (poison, unreadable), listed and replayed.

Nothing is dropped (docs/reliability.md): what a consumer cannot handle waits here until an admin
fixes the cause and replays it. Admins see their tenant's sites' dead letters; those of no known
site (unreadable) only the provider, in its own tenant.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from sqlmodel import Session

from tonerwatch_api.db.tx import run_tx
from tonerwatch_api.deps import ERRORS, Admin, app_state
from tonerwatch_api.domain.access import audit
from tonerwatch_api.domain.dead_letters import (
    all_site_ids,
    sees_unowned,
    tenant_site_ids,
    visible,
)
from tonerwatch_api.domain.errors import NotFound
from tonerwatch_api.schemas.common import ROW_ID_MAX
from tonerwatch_api.schemas.dead_letters import DeadLetterList, ReplayOut

router = APIRouter(prefix="/api/v1")

# Dead letters read from the stream per listing, newest first, before the tenant filter.
SCAN = 2000

LetterId = Annotated[
    int,
    Path(
        description="Dead letter id (from GET /dead-letters)", examples=[118], ge=1, le=ROW_ID_MAX
    ),
]


@router.get("/dead-letters", response_model=DeadLetterList, tags=["ops"], responses=ERRORS)
async def list_dead_letters(
    request: Request,
    who: Admin,
    limit: Annotated[int, Query(ge=1, le=500, description="Dead letters at most")] = 100,
) -> DeadLetterList:
    """Return the newest dead letters of the tenant's sites: subject, type, error, deliveries, when."""
    st = app_state(request)
    letters = await st.bus.dead_letters(limit=SCAN)

    def work(s: Session) -> DeadLetterList:
        shown = visible(
            letters,
            st.bus.subjects,
            tenant_site_ids(s, who.tenant_id),
            all_site_ids(s),
            sees_unowned(who),
        )
        return DeadLetterList(items=shown[:limit])

    return await run_tx(st.engine, work)


@router.post(
    "/dead-letters/{letter_id}/replay",
    response_model=ReplayOut,
    status_code=202,
    tags=["ops"],
    responses=ERRORS,
)
async def replay_dead_letter(request: Request, who: Admin, letter_id: LetterId) -> ReplayOut:
    """Ask the consumer that set the event aside to handle it again; on success it is removed."""
    st = app_state(request)
    letter = await st.bus.dead_letter_at(letter_id)
    missing = NotFound(f"dead letter {letter_id} not found")
    if letter is None:
        raise missing

    def check(s: Session) -> None:
        shown = visible(
            [letter],
            st.bus.subjects,
            tenant_site_ids(s, who.tenant_id),
            all_site_ids(s),
            sees_unowned(who),
        )
        if not shown:
            raise missing
        audit(
            s,
            who,
            "dead_letter.replay",
            str(letter_id),
            consumer=letter.consumer,
            event_id=letter.event_id,
        )

    await run_tx(st.engine, check)
    await st.bus.request_replay(letter.consumer, letter_id)
    return ReplayOut(id=letter_id, consumer=letter.consumer, replay_requested=True)
