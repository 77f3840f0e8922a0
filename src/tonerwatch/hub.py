"""`tonerwatch hub-config`: the hub's nats-server config and one credentials folder per site.

The operator lists the sites in a JSON file (`{"sites": [{"site": "acme-hq", "cert": ...,
"key": ...}]}`, each site's client certificate and key signed by the CA both sides trust; paths
relative to that file) and brings the hub's server certificate. This writes the hub folder with
the library (tonerwatch_shared.hub: hub.conf, hub.json, secrets.json, sites/<site>/), the same
folder the api enrols and revokes collectors from (TONERWATCH_HUB_DIR).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.js.errors import NotFoundError

from tonerwatch.services import CliError
from tonerwatch_shared.hub import (
    STATE_FILE,
    HubError,
    HubLayout,
    SiteEntry,
    read_state,
    write_hub_config,
)
from tonerwatch_shared.sites import (
    DOWN_STREAM,
    TlsFiles,
    down_stream_config,
    source_sites,
)
from tonerwatch_shared.subjects import Subjects, token

DEFAULT_STORE_DIR = Path("/data/nats")
DEFAULT_LEAF_PORT = 7422
DEFAULT_CLIENT_PORT = 4222


def read_sites(path: Path) -> list[SiteEntry]:
    """Return the sites listed in a sites file (certificate paths taken from its folder)."""
    try:
        data = json.loads(path.read_text())
        entries = [
            SiteEntry(
                site=str(item["site"]),
                cert=(path.parent / item["cert"]).resolve(),
                key=(path.parent / item["key"]).resolve(),
                revoked=bool(item.get("revoked", False)),
            )
            for item in data["sites"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CliError(f"sites file {path}: {exc}") from None
    for entry in entries:
        if token(entry.site) != entry.site:
            raise CliError(f"site id {entry.site!r}: use letters, digits, '-' and '_' only")
        for pem in (entry.cert, entry.key):
            if not entry.revoked and not pem.is_file():
                raise CliError(f"site {entry.site}: {pem} not found")
    return entries


def add_hub_parser(sub: Any) -> None:
    """Add `tonerwatch hub-config` to the CLI's subcommands."""
    hub = sub.add_parser(
        "hub-config",
        help="write the hub's nats-server config and each site's credentials folder (many sites, one hub)",
        description="From a sites file, write DIR/hub.conf (JetStream domain hub, TLS leaf-node "
        "listener, one account per site), DIR/secrets.json (passwords, kept across runs) and "
        "DIR/sites/<site>/ (credentials.json, ca.pem, cert.pem, key.pem: copy it to the site's "
        "box for `tonerwatch collector --credentials`). Re-run after adding or revoking a site, "
        "then reload the hub's nats-server.",
    )
    hub.add_argument("--sites", required=True, type=Path, help="the sites file (JSON)")
    hub.add_argument("--out", required=True, type=Path, help="where to write")
    hub.add_argument("--ca", required=True, type=Path, help="the CA both sides trust (PEM)")
    hub.add_argument("--hub-cert", required=True, type=Path, help="the hub's server certificate")
    hub.add_argument("--hub-key", required=True, type=Path, help="the hub's server key")
    # Left out on a re-run, these three are what DIR/hub.json recorded (the first run's), so a
    # re-run keeps the ports the running hub has (a reload cannot change them).
    hub.add_argument(
        "--store-dir",
        type=Path,
        default=None,
        help=f"the hub's JetStream store (default: as before, else {DEFAULT_STORE_DIR})",
    )
    hub.add_argument(
        "--leaf-port",
        type=int,
        default=None,
        help=f"leaf-node port (default: as before, else {DEFAULT_LEAF_PORT})",
    )
    hub.add_argument(
        "--client-port",
        type=int,
        default=None,
        help=f"the services' port, on 127.0.0.1 (default: as before, else {DEFAULT_CLIENT_PORT})",
    )
    hub.add_argument(
        "--client-host",
        default=None,
        help="the services' listen address (default: as before, else 127.0.0.1; 0.0.0.0 for the "
        "compose overlay and Kubernetes, where the services reach the hub over their network)",
    )
    hub.add_argument(
        "--monitor-port",
        type=int,
        default=None,
        help="nats-server's monitoring port on 127.0.0.1, for a container's health probe "
        "(default: as before, else none; 8222 in the compose overlay and Kubernetes)",
    )
    hub.add_argument(
        "--conf-dir",
        type=Path,
        default=None,
        help="where the hub's nats-server sees the --out folder, e.g. /etc/tonerwatch-hub when "
        "it runs in a container with the folder mounted there: the hub's TLS files are copied "
        "into OUT/tls/ and hub.conf names them there (default: as before, else the folder itself)",
    )


def hub_layout(args: argparse.Namespace, tls: TlsFiles) -> HubLayout:
    """Return the layout to write: the options given, else what hub.json recorded, else defaults.

    The hub's TLS files are always the ones given (--ca, --hub-cert, --hub-key).
    """
    before: HubLayout | None = None
    if (args.out / STATE_FILE).is_file():
        try:
            before = read_state(args.out)[0]
        except HubError as exc:
            raise CliError(str(exc)) from None

    def chosen(given: Any, name: str, default: Any) -> Any:
        if given is not None:
            return given
        return getattr(before, name) if before is not None else default

    return HubLayout(
        hub_tls=tls,
        store_dir=chosen(args.store_dir, "store_dir", DEFAULT_STORE_DIR),
        leaf_port=chosen(args.leaf_port, "leaf_port", DEFAULT_LEAF_PORT),
        leaf_host=before.leaf_host if before is not None else HubLayout.leaf_host,
        client_port=chosen(args.client_port, "client_port", DEFAULT_CLIENT_PORT),
        subjects=before.subjects if before is not None else Subjects(),
        client_host=chosen(args.client_host, "client_host", "127.0.0.1"),
        monitor_port=chosen(args.monitor_port, "monitor_port", None),
        conf_dir=chosen(args.conf_dir, "conf_dir", None),
    )


def hub_config_command(args: argparse.Namespace) -> int:
    """Write the hub's config and the sites' credentials folders; print where."""
    for pem in (args.ca, args.hub_cert, args.hub_key):
        if not pem.is_file():
            raise CliError(f"{pem} not found")
    tls = TlsFiles(args.ca.resolve(), args.hub_cert.resolve(), args.hub_key.resolve())
    layout = hub_layout(args, tls)
    try:
        written = write_hub_config(read_sites(args.sites), args.out, layout)
    except HubError as exc:
        raise CliError(str(exc)) from None
    print(f"tonerwatch: wrote {args.out / 'hub.conf'} and {args.out / 'secrets.json'}")
    for site, path in written.items():
        print(f"tonerwatch: site {site}: copy {path.parent}/ to its collector")
    return 0


async def provision_sites(
    nats_url: str,
    sites: list[SiteEntry],
    made: dict[str, Any],
    subjects: Subjects | None = None,
    timeout_s: float = 5.0,
) -> tuple[list[str], list[str]]:
    """Create each active site's SITE_DOWN (as its admin) and source its events into the hub's.

    Return the active sites, and those whose source was added or brought up to date.
    """
    subjects = subjects or Subjects()
    active = [e.site for e in sites if not e.revoked]
    for site in active:
        admin = await nats.connect(
            nats_url,
            user=f"admin-{site}",
            password=made["sites"][site]["admin_password"],
            connect_timeout=timeout_s,
            allow_reconnect=False,
        )
        try:
            js = admin.jetstream(timeout=timeout_s)
            try:
                await js.stream_info(DOWN_STREAM)
            except NotFoundError:
                await js.add_stream(down_stream_config(subjects, site))
        finally:
            await admin.close()
    hub = await nats.connect(
        nats_url,
        user="hub",
        password=made["hub"],
        connect_timeout=timeout_s,
        allow_reconnect=False,
    )
    try:
        try:
            changed = await source_sites(hub.jetstream(timeout=timeout_s), subjects, active)
        except NotFoundError:
            raise CliError(
                f"the hub's stream {subjects.events_stream} does not exist yet: start the hub's "
                "services (they create it), then run this again"
            ) from None
    finally:
        await hub.close()
    return active, changed


def add_hub_sites_parser(sub: Any) -> None:
    """Add `tonerwatch hub-sites` to the CLI's subcommands."""
    cmd = sub.add_parser(
        "hub-sites",
        help="create each site's work stream at the hub and bring its readings in (after hub-config)",
        description="Connected to the hub's nats-server (reloaded with the hub.conf `hub-config` "
        "wrote, the hub's services started): create each active site's SITE_DOWN stream in its "
        "account and make the hub's events stream source the site's events. Safe to re-run: a "
        "source made by an older release is brought up to date, continuing after the last "
        "event it brought in.",
    )
    cmd.add_argument(
        "--sites", type=Path, default=None, help="only the sites in this sites file (default: all)"
    )
    cmd.add_argument("--out", required=True, type=Path, help="what `hub-config --out` wrote")
    cmd.add_argument(
        "--nats-url", default="nats://127.0.0.1:4222", help="the hub's nats-server (clients)"
    )


def hub_sites_command(args: argparse.Namespace) -> int:
    """Provision the sites at the running hub; print which."""
    secrets_file = args.out / "secrets.json"
    if not secrets_file.is_file():
        raise CliError(f"{secrets_file} not found: run `tonerwatch hub-config` first")
    made = json.loads(secrets_file.read_text())
    try:
        # The folder's record, not only the sites file: a site revoked through the api stays so.
        sites = read_state(args.out)[1]
    except HubError as exc:
        raise CliError(str(exc)) from None
    if args.sites is not None:
        listed = {e.site for e in read_sites(args.sites)}
        sites = [e for e in sites if e.site in listed]
    unknown = [e.site for e in sites if e.site not in made.get("sites", {})]
    if unknown:
        raise CliError(
            f"sites {unknown} are not in {secrets_file}: run `tonerwatch hub-config` first"
        )
    try:
        active, changed = asyncio.run(provision_sites(args.nats_url, sites, made))
    except (OSError, nats.errors.Error) as exc:
        raise CliError(f"hub at {args.nats_url}: {exc!r}") from None
    print(f"tonerwatch: sites at the hub: {', '.join(active) or 'none'}")
    if changed:
        print(f"tonerwatch: sourcing added or brought up to date for: {', '.join(changed)}")
    return 0


__all__ = [
    "add_hub_parser",
    "add_hub_sites_parser",
    "hub_config_command",
    "hub_sites_command",
    "provision_sites",
    "read_sites",
]
