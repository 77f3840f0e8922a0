"""The hub's wanted sites in a NATS KV bucket, and the rendering `tonerwatch hub-sync` converges to.

The api records each enrolment and revocation in the bucket `<prefix>_HUB_SITES` of the hub's
account HUB (key: the site id; value: a WantedSite). Beside each hub nats-server a `tonerwatch
hub-sync` watches the bucket, renders that server's hub.conf from the hub folder
(`tonerwatch hub-config`'s hub.json and secrets.json, read-only: a Kubernetes Secret) with the
bucket's word on each site, writes it atomically where its server reads it, reloads that server
and drops a revoked site's live leaf. The folder no longer has to be writable by the api, and
each replica of a hub cluster converges its own server.

No password travels through the bucket: a site's leaf password stays in the folder's
secrets.json (only the sidecars and the operator read it). The bucket says which sites are
admitted; a site the folder does not know (no certificate, no password) cannot be admitted by it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict

from tonerwatch_shared.hub import (
    SECRETS_FILE,
    HubError,
    SiteEntry,
    read_state,
    render_hub_conf,
    write_private,
)
from tonerwatch_shared.kv import ModelKv
from tonerwatch_shared.sites import site_user

log = logging.getLogger(__name__)

HUB_SITES_BUCKET = "HUB_SITES"  # prefixed with the stream prefix: TW_HUB_SITES
HUB_SITES_HISTORY = 5


class WantedSite(BaseModel):
    """What the hub wants for one site: admitted (revoked False) or refused, and since when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    site: str
    user: str
    revoked: bool
    changed_at: datetime
    by: str = ""


def wanted_site(site: str, *, revoked: bool, by: str = "") -> WantedSite:
    """Return the record of a site admitted or revoked now."""
    return WantedSite(
        site=site, user=site_user(site), revoked=revoked, changed_at=datetime.now(UTC), by=by
    )


async def record_site(kv: KeyValue, site: str, *, revoked: bool, by: str = "") -> bool:
    """Record the site as admitted or revoked; return False if the bucket said so already.

    A revocation is sticky here as in the folder: admitting (revoked=False) never overrides a
    recorded revocation (False is returned; the operator re-admits with a new password).
    """
    store = ModelKv(kv, WantedSite)

    def change(current: WantedSite | None) -> WantedSite | None:
        if current is not None and (current.revoked == revoked or current.revoked):
            return None
        return wanted_site(site, revoked=revoked, by=by)

    return await store.edit(site, change) is not None


async def read_site(kv: KeyValue, site: str) -> WantedSite | None:
    """Return what the bucket says of one site (None: nothing)."""
    return (await ModelKv(kv, WantedSite).read(site)).value


async def read_wanted(kv: KeyValue) -> dict[str, WantedSite]:
    """Return every site the bucket speaks of."""
    store = ModelKv(kv, WantedSite)
    found: dict[str, WantedSite] = {}
    for key in await store.keys():
        value = (await store.read(key)).value
        if value is not None:
            found[key] = value
    return found


def parse_wanted(data: bytes | None) -> WantedSite | None:
    """Return a bucket value as a WantedSite (None: deleted or unreadable, logged)."""
    if not data:
        return None
    try:
        return WantedSite.model_validate_json(data)
    except ValueError as exc:
        log.warning("unreadable hub site record, ignored: %s", exc)
        return None


def wanted_entries(
    folder_sites: list[SiteEntry], wanted: dict[str, WantedSite], made: dict[str, Any]
) -> list[SiteEntry]:
    """Return the folder's sites with the bucket's word applied.

    Revoked in either is revoked; a site without a leaf password in the folder stays revoked
    (its password was forgotten). Sites only the bucket names are left out (logged).
    """
    known = {e.site for e in folder_sites}
    for site in sorted(set(wanted) - known):
        log.warning("site %s is in the bucket but not in the hub folder: run hub-config", site)
    entries = []
    for entry in folder_sites:
        record = wanted.get(entry.site)
        has_password = bool((made.get("sites") or {}).get(entry.site, {}).get("password"))
        revoked = entry.revoked or not has_password or (record is not None and record.revoked)
        entries.append(SiteEntry(entry.site, entry.cert, entry.key, revoked))
    return entries


def render_synced(
    folder: Path,
    wanted: dict[str, WantedSite],
    *,
    server_name: str = "hub",
    cluster: str = "",
    ports: dict[str, Any] | None = None,
) -> tuple[str, set[str]]:
    """Return hub.conf for this server from the folder and the bucket, and the revoked sites.

    ports replaces HubLayout fields for this server (client_port, leaf_port, monitor_port,
    store_dir: several servers of one cluster on one machine).
    """
    layout, sites = read_state(folder)
    if ports:
        layout = dataclasses.replace(layout, **ports)
    try:
        made = json.loads((folder / SECRETS_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise HubError(f"{folder / SECRETS_FILE}: {exc!r}") from None
    entries = wanted_entries(sites, wanted, made)
    text = render_hub_conf(layout, entries, made, server_name=server_name, cluster=cluster)
    return text, {e.site for e in entries if e.revoked}


def cluster_block(name: str, port: int, routes: list[str]) -> str:
    """Return a hub cluster's block (every replica lists every route, itself included)."""
    urls = ", ".join(json.dumps(r) for r in routes)
    return f"cluster {{\n  name: {json.dumps(name)}\n  port: {port}\n  routes: [{urls}]\n}}\n"


def write_if_changed(path: Path, text: str) -> bool:
    """Write text to path (owner-only, atomically: a reload never reads half a file); return
    whether it changed."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(path.name + ".new")
    write_private(draft, text)
    draft.replace(path)
    return True


def system_and_hub_passwords(folder: Path) -> tuple[str, str]:
    """Return (system, hub) passwords from the folder's secrets.json."""
    try:
        made = json.loads((folder / SECRETS_FILE).read_text())
        return str(made["system"]), str(made["hub"])
    except (OSError, ValueError, KeyError) as exc:
        raise HubError(f"{folder / SECRETS_FILE}: {exc!r}") from None


__all__ = [
    "HUB_SITES_BUCKET",
    "HUB_SITES_HISTORY",
    "WantedSite",
    "cluster_block",
    "parse_wanted",
    "read_site",
    "read_wanted",
    "record_site",
    "render_synced",
    "system_and_hub_passwords",
    "wanted_entries",
    "wanted_site",
    "write_if_changed",
]
