"""Secrets sealed in the database: every flush seals printers' SNMP secrets and those in outbox events.

One seam for every writer (REST, UI, projections, anything added later): a `before_flush` hook on
the api's engine seals what a change put in the clear with the current key (tonerwatch_shared.
sealing), so no row holds a community other than public nor a v3 key in plaintext, and the events
the outbox publishes carry them sealed to the poller. `reseal_all` runs at start: it seals rows
written before sealing existed, or without a key, and moves values sealed with a previous key to
the current one (key rotation).
"""

from __future__ import annotations

import json
import logging
import weakref
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select

from tonerwatch_api.db.alerting import MailServer
from tonerwatch_api.db.models import OutboxEvent, Printer
from tonerwatch_shared.events import SnmpCredentials
from tonerwatch_shared.sealing import Sealer, credentials_are_current, reseal_credentials

log = logging.getLogger(__name__)
RESEAL_BATCH = 500

# The sealer of each engine the api runs on (tests run several engines in one process).
_SEALERS: weakref.WeakKeyDictionary[Engine, Sealer] = weakref.WeakKeyDictionary()


def sealed_dict(sealer: Sealer, stored: dict[str, Any]) -> dict[str, Any]:
    """Return stored credentials (a row's or an event's JSON) with their secrets sealed with the current key.

    Keys that are not SNMP fields (the api's own marks, such as from_discovery) are kept as they are.
    """
    creds = SnmpCredentials.model_validate(stored)
    if credentials_are_current(sealer, creds):
        return stored
    return {**stored, **reseal_credentials(sealer, creds).model_dump()}


def _sealed_payload(sealer: Sealer, payload: str) -> str:
    """Return an outbox payload whose credentials (one set or a list) are sealed with the current key."""
    if '"credentials"' not in payload:
        return payload
    data = json.loads(payload)
    creds = data.get("credentials")
    if isinstance(creds, dict):
        sealed: object = sealed_dict(sealer, creds)
    elif isinstance(creds, list):
        sealed = [sealed_dict(sealer, c) if isinstance(c, dict) else c for c in creds]
    else:
        return payload
    if sealed == creds:
        return payload
    data["credentials"] = sealed
    return json.dumps(data, separators=(",", ":"))


def _before_flush(session: OrmSession, _context: object, _instances: object) -> None:
    bind = session.get_bind()
    sealer = _SEALERS.get(bind) if isinstance(bind, Engine) else None
    if sealer is None or not sealer.enabled:
        return
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, Printer) and obj.credentials:
            if sa_inspect(obj).attrs.credentials.history.has_changes():
                sealed = sealed_dict(sealer, obj.credentials)
                if sealed is not obj.credentials:
                    obj.credentials = sealed
        elif isinstance(obj, OutboxEvent) and obj in session.new:
            obj.payload = _sealed_payload(sealer, obj.payload)
        elif (
            isinstance(obj, MailServer)
            and obj.password
            and sa_inspect(obj).attrs.password.history.has_changes()
        ):
            obj.password = sealer.reseal(obj.password)


sa_event.listen(OrmSession, "before_flush", _before_flush)


def seal_on_flush(engine: Engine, sealer: Sealer) -> None:
    """Seal secrets in every flush of sessions on engine with sealer's current key."""
    _SEALERS[engine] = sealer


def reseal_all(engine: Engine, sealer: Sealer) -> int:
    """Seal every stored secret with the current key (plaintext, or a previous key's); return rows changed.

    Raises SealingError when a value was sealed with a key the sealer does not have.
    """
    if not sealer.enabled:
        return 0
    changed = 0
    last = ""
    while True:
        with Session(engine) as session:
            printers = session.exec(
                select(Printer)
                .where(col(Printer.id) > last, col(Printer.credentials).is_not(None))
                .order_by(col(Printer.id))
                .limit(RESEAL_BATCH)
            ).all()
            if not printers:
                break
            for printer in printers:
                stored = printer.credentials or {}
                sealed = sealed_dict(sealer, stored)
                if sealed is not stored:
                    printer.credentials = sealed
                    session.add(printer)
                    changed += 1
            last = printers[-1].id
            session.commit()
    with Session(engine) as session:
        for server in session.exec(
            select(MailServer).where(col(MailServer.password).is_not(None))
        ).all():
            assert server.password is not None
            again = sealer.reseal(server.password)
            if again != server.password:
                server.password = again
                session.add(server)
                changed += 1
        session.commit()
    with Session(engine) as session:
        for row in session.exec(select(OutboxEvent)).all():
            payload = _sealed_payload(sealer, row.payload)
            if payload != row.payload:
                row.payload = payload
                session.add(row)
                changed += 1
        session.commit()
    if changed:
        log.info("sealed the secrets of %d stored row(s) with the current key", changed)
    return changed
