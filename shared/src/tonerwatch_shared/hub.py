"""The hub's folder: its nats-server config, the sites' credentials folders, enrolment and revocation.

`tonerwatch hub-config` writes the folder (DIR) from a sites file; the api, given the same folder
(TONERWATCH_HUB_DIR), hands a site's credentials to an enrolling collector and revokes a site. So
that the api can regenerate the config without the sites file, DIR/hub.json records what the
config was made from (the hub's TLS files, ports, store, each site's certificate and which sites
are revoked). A revocation is sticky: a later `hub-config` run keeps the site revoked, and its
leaf password is forgotten, so re-admitting it (delete it from hub.json's "revoked") makes a new one.

- `hub.conf`: JetStream domain `hub`, the TLS leaf-node listener, accounts HUB, SYS and one per site;
- `secrets.json`: the passwords made, reused on the next run so regenerating never changes a
  working site's password;
- `sites/<site>/`: `credentials.json`, `ca.pem`, `cert.pem`, `key.pem`: what a collector needs;
- `enrolments.json`: the same for every active site in one file (a Secret cannot hold folders).

With `tonerwatch hub-sync` beside each hub nats-server (tonerwatch_shared.hub_sync) the folder
is only read: the api records enrolments and revocations in a NATS bucket instead.

Every file holding a password or a key is written owner-only (0600). Changes to the folder are
serialised by an exclusive lock on DIR/.lock (two revocations at once each see the other's).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from tonerwatch_shared.embedded import nats_server_config
from tonerwatch_shared.sites import (
    HUB_DOMAIN,
    SiteAccount,
    SiteCredentials,
    TlsFiles,
    hub_accounts,
    hub_leafnodes,
    kick_site,
    site_user,
)
from tonerwatch_shared.subjects import Subjects, token

SITE_TLS = TlsFiles(Path("ca.pem"), Path("cert.pem"), Path("key.pem"))
STATE_FILE = "hub.json"
SECRETS_FILE = "secrets.json"
CREDENTIALS_FILE = "credentials.json"
ENROLMENTS_FILE = "enrolments.json"  # every active site's enrolment, for a read-only mount
SYSTEM_USER = "sys"
HUB_TLS_DIR = "tls"  # DIR/tls/: the hub's own TLS files, when hub.conf is read in a container


class HubError(Exception):
    """The hub folder cannot do what was asked; the message says why."""


@dataclass(frozen=True)
class SiteEntry:
    """One site of the hub: its id, its client certificate and key, revoked or not."""

    site: str
    cert: Path
    key: Path
    revoked: bool = False


@dataclass(frozen=True)
class HubLayout:
    """What hub.conf is made from besides the sites: TLS files, ports, store, names."""

    hub_tls: TlsFiles
    store_dir: Path
    leaf_port: int = 7422
    leaf_host: str = "0.0.0.0"
    client_port: int = 4222
    subjects: Subjects = field(default_factory=Subjects)
    # The services' listen address: loopback beside the services; 0.0.0.0 in a container, where
    # the services reach the hub's nats-server over the compose or cluster network.
    client_host: str = "127.0.0.1"
    # nats-server's monitoring port on 127.0.0.1 (its /healthz for a container's probe); None: off.
    monitor_port: int | None = None
    # Where the hub's nats-server sees this folder (a container's mount, e.g.
    # /etc/tonerwatch-hub); hub.conf then names its TLS files (copied into DIR/tls/) there.
    # None: the folder's own path (nats-server runs on this machine).
    conf_dir: Path | None = None


def _password() -> str:
    return secrets.token_urlsafe(24)


def hub_secrets(previous: dict[str, Any], sites: list[SiteEntry]) -> dict[str, Any]:
    """Return the passwords to use: every one already made is kept, missing ones are made."""
    made: dict[str, Any] = {
        "hub": previous.get("hub") or _password(),
        "system": previous.get("system") or _password(),
        "sites": dict(previous.get("sites") or {}),
    }
    for entry in sites:
        site = made["sites"].setdefault(entry.site, {})
        if entry.revoked:
            site.pop("password", None)  # forgotten: re-admitting the site makes a new one
        else:
            site.setdefault("password", _password())
        site.setdefault("admin_password", _password())
    return made


def write_private(path: Path, text: str) -> None:
    """Write text to path, readable by its owner only."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


@contextlib.contextmanager
def hub_lock(out: Path) -> Iterator[None]:
    """Hold the hub folder's exclusive lock (blocking) while the block runs."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_state(out: Path) -> tuple[HubLayout, list[SiteEntry]]:
    """Return the layout and sites hub.json records (HubError if the folder has none).

    Paths inside the folder are recorded relative to it, so the folder works wherever it is
    mounted (the api's container reads the folder the operator wrote elsewhere).
    """
    path = out / STATE_FILE
    try:
        data = json.loads(path.read_text())
        tls = data["hub_tls"]
        monitor = data.get("monitor_port")
        layout = HubLayout(
            hub_tls=TlsFiles(out / tls["ca"], out / tls["cert"], out / tls["key"]),
            store_dir=Path(data["store_dir"]),
            leaf_port=int(data["leaf_port"]),
            leaf_host=str(data["leaf_host"]),
            client_port=int(data["client_port"]),
            subjects=Subjects(data["subject_root"], data["stream_prefix"]),
            client_host=str(data.get("client_host") or "127.0.0.1"),
            monitor_port=int(monitor) if monitor else None,
            conf_dir=Path(data["conf_dir"]) if data.get("conf_dir") else None,
        )
        revoked = set(data.get("revoked") or [])
        sites = [
            SiteEntry(s["site"], out / s["cert"], out / s["key"], s["site"] in revoked)
            for s in data["sites"]
        ]
    except FileNotFoundError:
        raise HubError(f"{path} not found: run `tonerwatch hub-config` for this folder") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HubError(f"{path}: {exc!r}") from None
    return layout, sites


def _in_folder(out: Path, path: Path) -> str:
    """Return path relative to the folder when inside it (absolute otherwise)."""
    try:
        return str(path.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(path.resolve())


def _write_state(out: Path, layout: HubLayout, sites: list[SiteEntry]) -> None:
    state = {
        "hub_tls": {k: _in_folder(out, v) for k, v in vars(layout.hub_tls).items()},
        "store_dir": str(layout.store_dir),
        "leaf_port": layout.leaf_port,
        "leaf_host": layout.leaf_host,
        "client_port": layout.client_port,
        "client_host": layout.client_host,
        "monitor_port": layout.monitor_port,
        "conf_dir": str(layout.conf_dir) if layout.conf_dir else None,
        "subject_root": layout.subjects.root,
        "stream_prefix": layout.subjects.stream_prefix,
        "sites": [
            {"site": e.site, "cert": _in_folder(out, e.cert), "key": _in_folder(out, e.key)}
            for e in sites
        ],
        "revoked": sorted(e.site for e in sites if e.revoked),
    }
    write_private(out / STATE_FILE, json.dumps(state, indent=2))


def _folder_tls(out: Path, layout: HubLayout) -> TlsFiles:
    """Return the hub's TLS files (kept, copied into DIR/tls/ when hub.conf is read elsewhere)."""
    if layout.conf_dir is None:
        return layout.hub_tls
    folder = out / HUB_TLS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    kept = TlsFiles(folder / "ca.pem", folder / "hub.pem", folder / "hub-key.pem")
    for source, target in zip(vars(layout.hub_tls).values(), vars(kept).values(), strict=True):
        if Path(source).resolve() != Path(target).resolve():
            write_private(Path(target), Path(source).read_text())
    return kept


def _merge(previous: list[SiteEntry], given: list[SiteEntry]) -> list[SiteEntry]:
    """Return given plus the sites only previous knew; a site revoked before stays revoked."""
    before = {e.site: e for e in previous}
    merged = []
    for entry in given:
        old = before.pop(entry.site, None)
        if old is not None and old.revoked and not entry.revoked:
            entry = SiteEntry(entry.site, entry.cert, entry.key, revoked=True)
        merged.append(entry)
    return merged + list(before.values())


def write_hub_config(sites: list[SiteEntry], out: Path, layout: HubLayout) -> dict[str, Path]:
    """Write hub.conf, hub.json, secrets.json and each site's folder; return each active site's credentials file.

    Sites the folder already knew and `sites` does not list are kept; revoked ones stay revoked.
    """
    with hub_lock(out):
        previous: list[SiteEntry] = []
        if (out / STATE_FILE).is_file():
            previous = read_state(out)[1]
        return _write_locked(_merge(previous, sites), out, layout)


def conf_tls(layout: HubLayout) -> TlsFiles:
    """Return the paths hub.conf names the hub's TLS files by (under --conf-dir when given)."""
    if layout.conf_dir is None:
        return layout.hub_tls
    seen = layout.conf_dir / HUB_TLS_DIR
    return TlsFiles(seen / "ca.pem", seen / "hub.pem", seen / "hub-key.pem")


def render_hub_conf(
    layout: HubLayout,
    sites: list[SiteEntry],
    made: dict[str, Any],
    *,
    server_name: str = "hub",
    cluster: str = "",
) -> str:
    """Return hub.conf's text for these sites and passwords (hub_secrets' shape); cluster is
    appended as is (a hub-sync sidecar's cluster block, server_name its pod's)."""
    subjects = layout.subjects
    accounts = [
        SiteAccount(
            e.site,
            password=made["sites"][e.site].get("password", ""),
            admin_password=made["sites"][e.site]["admin_password"],
            revoked=e.revoked,
        )
        for e in sites
    ]
    return nats_server_config(
        store_dir=layout.store_dir,
        port=layout.client_port,
        host=layout.client_host,
        http_port=layout.monitor_port,
        server_name=server_name,
        domain=HUB_DOMAIN,
        extra=hub_leafnodes(layout.leaf_port, conf_tls(layout), host=layout.leaf_host)
        + hub_accounts(
            subjects,
            accounts,
            hub_user="hub",
            hub_password=made["hub"],
            system_password=made["system"],
        )
        + cluster,
    )


def _write_locked(sites: list[SiteEntry], out: Path, layout: HubLayout) -> dict[str, Path]:
    subjects = layout.subjects
    kept_tls = _folder_tls(out, layout)
    layout = dataclasses.replace(layout, hub_tls=kept_tls)
    secrets_file = out / SECRETS_FILE
    previous = json.loads(secrets_file.read_text()) if secrets_file.is_file() else {}
    made = hub_secrets(previous, sites)
    write_private(secrets_file, json.dumps(made, indent=2))
    config = render_hub_conf(layout, sites, made)
    # Written to a temporary file first: a reload never reads a half-written config.
    write_private(out / "hub.conf.new", config)
    (out / "hub.conf.new").replace(out / "hub.conf")
    written: dict[str, Path] = {}
    for entry in sites:
        folder = out / "sites" / entry.site
        if entry.revoked:
            shutil.rmtree(folder, ignore_errors=True)  # its password no longer opens anything
            continue
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(layout.hub_tls.ca, folder / SITE_TLS.ca)
        if entry.cert.resolve() != (folder / SITE_TLS.cert).resolve():
            shutil.copyfile(entry.cert, folder / SITE_TLS.cert)
            write_private(folder / SITE_TLS.key, entry.key.read_text())
        credentials = SiteCredentials(
            site=entry.site,
            user=site_user(entry.site),
            password=made["sites"][entry.site]["password"],
            tls=SITE_TLS,
            subject_root=subjects.root,
            stream_prefix=subjects.stream_prefix,
        )
        credentials.write(folder / CREDENTIALS_FILE)
        written[entry.site] = folder / CREDENTIALS_FILE
    # From now on the folder's own copies are the site's certificate: no outside path needed.
    kept = [
        SiteEntry(
            e.site,
            out / "sites" / e.site / SITE_TLS.cert if not e.revoked else e.cert,
            out / "sites" / e.site / SITE_TLS.key if not e.revoked else e.key,
            e.revoked,
        )
        for e in sites
    ]
    _write_state(out.resolve(), layout, kept)
    # Every active site's enrolment in one file: what a read-only mount of the folder (a
    # Kubernetes Secret: no nested folders) gives the api instead of sites/<site>/.
    bundles = {site: _folder_bundle(out, site) for site in written}
    write_private(out / ENROLMENTS_FILE, json.dumps(bundles, indent=2))
    return written


def revoke_in_config(out: Path, site: str) -> bool:
    """Rewrite the hub folder with the site revoked; return False if it already was (HubError if unknown)."""
    with hub_lock(out):
        layout, sites = read_state(out)
        if site not in {e.site for e in sites}:
            raise HubError(f"site {site!r} is not one of this hub's")
        if any(e.site == site and e.revoked for e in sites):
            return False
        revoked = [SiteEntry(e.site, e.cert, e.key, e.revoked or e.site == site) for e in sites]
        _write_locked(revoked, out, layout)
        return True


def _folder_bundle(out: Path, site: str) -> dict[str, Any]:
    folder = out / "sites" / site
    credentials = json.loads((folder / CREDENTIALS_FILE).read_text())
    files = {
        name.name: (folder / name).read_text()
        for name in (SITE_TLS.ca, SITE_TLS.cert, SITE_TLS.key)
    }
    return {"site": site, "credentials": credentials, "files": files}


def site_bundle(out: Path, site: str) -> dict[str, Any]:
    """Return what an enrolling collector gets: its credentials and PEM files (HubError if not active).

    From DIR/sites/<site>/, else from DIR/enrolments.json (a folder mounted from a Secret).
    """
    try:
        return _folder_bundle(out, site)
    except FileNotFoundError:
        pass
    try:
        found = json.loads((out / ENROLMENTS_FILE).read_text()).get(site)
    except (FileNotFoundError, ValueError):
        found = None
    if not found:
        raise HubError(
            f"site {site!r} has no credentials at this hub (not added with `tonerwatch "
            "hub-config`, or revoked)"
        )
    return dict(found)


def write_site_bundle(bundle: dict[str, Any], folder: Path, hub_url: str | None) -> Path:
    """Write an enrolment's files into folder (owner-only); return its credentials file."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    for name, text in bundle["files"].items():
        if Path(name).name != name or name not in {"ca.pem", "cert.pem", "key.pem"}:
            raise HubError(f"unexpected file {name!r} in the enrolment")
        write_private(folder / name, text)
    data = dict(bundle["credentials"])
    data["tls"] = {k: str(v) for k, v in vars(SITE_TLS).items()}
    if hub_url:
        data["hub_url"] = hub_url
    path = folder / CREDENTIALS_FILE
    SiteCredentials(**{**data, "tls": SITE_TLS}).write(path)
    return path


def system_password(out: Path) -> str:
    """Return the password of the hub's system user (HubError if the folder has none)."""
    try:
        return str(json.loads((out / SECRETS_FILE).read_text())["system"])
    except (OSError, ValueError, KeyError) as exc:
        raise HubError(f"{out / SECRETS_FILE}: {exc!r}") from None


async def reload_hub(system: Client, timeout_s: float = 2.0) -> int:
    """Have every hub server reload its config file; return how many did (as the system user)."""
    replies: list[dict[str, Any]] = []
    inbox = system.new_inbox()

    async def collect(msg: Any) -> None:
        with contextlib.suppress(ValueError):
            replies.append(json.loads(msg.data))

    sub = await system.subscribe(inbox, cb=collect)
    try:
        await system.publish("$SYS.REQ.SERVER.PING", b"", reply=inbox)
        await asyncio.sleep(min(timeout_s, 0.5))  # every server answers; gather them all
    finally:
        await sub.unsubscribe()
    reloaded = 0
    for reply in replies:
        server_id = reply.get("server", {}).get("id")
        if not server_id:
            continue
        answer = await system.request(f"$SYS.REQ.SERVER.{server_id}.RELOAD", b"", timeout=timeout_s)
        error = json.loads(answer.data).get("error")
        if error:
            raise HubError(f"hub server {server_id} refused the reload: {error}")
        reloaded += 1
    return reloaded


async def revoke_collector(
    out: Path, site: str, system: Client, timeout_s: float = 2.0
) -> tuple[bool, int]:
    """Revoke a site: rewrite the config, reload every hub server, drop its live leaf; return (changed, kicked).

    The kick runs even when the site was already revoked in the config (a retry after a failed
    reload or kick finishes the job).
    """
    changed = await asyncio.to_thread(revoke_in_config, out, site)
    await reload_hub(system, timeout_s)
    # A reload refuses only new connections; the live leaf is dropped here.
    kicked = await kick_site(system, token(site), timeout_s=min(timeout_s, 1.0))
    return changed, kicked


__all__ = [
    "SITE_TLS",
    "SYSTEM_USER",
    "HubError",
    "HubLayout",
    "SiteEntry",
    "hub_lock",
    "hub_secrets",
    "read_state",
    "reload_hub",
    "revoke_collector",
    "revoke_in_config",
    "site_bundle",
    "system_password",
    "write_hub_config",
    "write_private",
    "write_site_bundle",
]
