"""The `tonerwatch` command: the whole system (`up`), one service (`serve`), and one-shot tools."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tonerwatch.collector import add_collector_parser, collector_command
from tonerwatch.discover import sweep_command
from tonerwatch.hub import (
    add_hub_parser,
    add_hub_sites_parser,
    hub_config_command,
    hub_sites_command,
)
from tonerwatch.hub_sync import add_hub_sync_parser, hub_sync_command
from tonerwatch.poll import poll_command
from tonerwatch.portal import add_portal_parser, portal_command
from tonerwatch.services import SERVICES, CliError, service_module
from tonerwatch.tenants import add_tenant_parser, tenant_command
from tonerwatch_shared.bus import BusError, BusStopped
from tonerwatch_shared.embedded import EmbeddedError
from tonerwatch_shared.lifecycle import PortInUse, ensure_port_free
from tonerwatch_shared.sealing import SealingError
from tonerwatch_shared.settings import CommonSettings, SettingsError, load_settings

EXIT_USAGE = 2


def default_data_dir() -> Path:
    """Return the per-user data folder (TONERWATCH_DATA_DIR wins)."""
    env = os.environ.get("TONERWATCH_DATA_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("tonerwatch", appauthor=False))


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="tonerwatch",
        description="TonerWatch keeps fleets of network printers supplied: it discovers printers, polls "
        "their supplies over SNMP/IPP, alerts before anything runs out and feeds an upstream portal.",
        epilog="Settings come from TONERWATCH_* environment variables, a .env file, or secret files in "
        "TONERWATCH_SECRETS_DIR. See README.md.",
    )
    parser.add_argument(
        "--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR (env TONERWATCH_LOG_LEVEL)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = sub.add_parser(
        "up",
        help="run the whole system (embedded NATS and SQLite unless TONERWATCH_NATS_URL/DATABASE_URL are set)",
        description="Run all five services in one process. With no servers configured it starts an embedded "
        "nats-server (JetStream) on a free loopback port and uses SQLite, both in --data-dir.",
    )
    up.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where data lives (default: per-user data folder)",
    )
    up.add_argument(
        "--demo",
        action="store_true",
        help="also simulate a fleet of printers on loopback and monitor it",
    )
    up.add_argument(
        "--demo-count", type=int, default=30, help="printers in the demo fleet (default 30)"
    )
    up.add_argument("--host", default=None, help="web/API listen address (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=None, help="web/API port (default 8080)")
    up.add_argument(
        "--only", default=None, help="comma-separated subset of services to run (default all)"
    )

    serve = sub.add_parser(
        "serve",
        help="run one service alone (what compose and Kubernetes run)",
        description="Run one service; it needs TONERWATCH_NATS_URL (and the api TONERWATCH_DATABASE_URL).",
    )
    serve.add_argument("service", choices=SERVICES)

    migrate = sub.add_parser(
        "migrate",
        help="bring the database schema to the newest version, then exit (run it before the api)",
        description="Run the api's database migrations to head against TONERWATCH_DATABASE_URL (default: "
        "SQLite in --data-dir, as `up` uses). On PostgreSQL under an advisory lock, so it is safe while "
        "api replicas start. Exit 2 when the database cannot be reached or the lock is not granted "
        "within TONERWATCH_MIGRATE_LOCK_TIMEOUT_S.",
    )
    migrate.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where `up` keeps its SQLite database when TONERWATCH_DATABASE_URL is unset "
        "(default: per-user data folder)",
    )

    poll = sub.add_parser("poll", help="poll one printer once and print what it reports")
    poll.add_argument("host", help="printer address or DNS name")
    poll.add_argument("--port", type=int, default=161)
    poll.add_argument(
        "--community", default="public", help="SNMP v1/v2c community (default public)"
    )
    poll.add_argument("--snmp-version", choices=["1", "2c", "3"], default="2c")
    poll.add_argument("--user", help="SNMPv3 user")
    poll.add_argument(
        "--auth-protocol",
        default=None,
        choices=["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"],
    )
    poll.add_argument("--auth-key", help="SNMPv3 authentication key")
    poll.add_argument("--priv-protocol", default=None, choices=["DES", "AES", "AES192", "AES256"])
    poll.add_argument("--priv-key", help="SNMPv3 privacy key")
    poll.add_argument("--timeout", type=float, default=2.0, help="seconds per request (default 2)")
    poll.add_argument("--retries", type=int, default=1)
    poll.add_argument("--json", action="store_true", help="print the supply-reading event as JSON")

    disc = sub.add_parser(
        "discover", help="sweep address ranges for SNMP printers, without the services"
    )
    disc.add_argument(
        "targets", nargs="+", metavar="RANGE", help="CIDR, a-b range, address or DNS name"
    )
    disc.add_argument(
        "--community", action="append", default=None, help="community to try (repeatable)"
    )
    disc.add_argument("--rate", type=float, default=200.0, help="packets per second (default 200)")
    disc.add_argument("--time-limit", type=float, default=None, help="stop after this many seconds")
    disc.add_argument(
        "--timeout", type=float, default=1.0, help="seconds to wait for answers (default 1)"
    )
    disc.add_argument("--port", type=int, default=161, help="SNMP port (default 161)")
    disc.add_argument(
        "--icmp",
        action="store_true",
        help="ping first and probe only what answers (needs root or ping rights; hosts that block ping are missed)",
    )
    disc.add_argument(
        "--json", action="store_true", help="one JSON object per printer, then a summary"
    )

    add_tenant_parser(sub)
    add_collector_parser(sub)
    add_hub_parser(sub)
    add_hub_sites_parser(sub)
    add_hub_sync_parser(sub)
    add_portal_parser(sub)
    sub.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    if args.log_level:
        os.environ["TONERWATCH_LOG_LEVEL"] = args.log_level
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "up": cmd_up,
        "serve": cmd_serve,
        "migrate": cmd_migrate,
        "poll": cmd_poll,
        "discover": cmd_discover,
        "tenant": tenant_command,
        "collector": collector_command,
        "hub-config": hub_config_command,
        "hub-sites": hub_sites_command,
        "hub-sync": hub_sync_command,
        "portal": portal_command,
        "version": cmd_version,
    }
    try:
        return commands[args.command](args)
    except BusStopped:
        return 0  # SIGTERM while still waiting for NATS: a clean stop
    except (CliError, SettingsError, BusError, EmbeddedError, PortInUse) as exc:
        print(f"tonerwatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def cmd_version(_args: argparse.Namespace) -> int:
    """Print the version."""
    from importlib.metadata import version

    print(f"tonerwatch {version('tonerwatch')}")
    return 0


def _configure_logging(service: str) -> CommonSettings:
    from tonerwatch_shared.logs import configure_logging

    common = load_settings(CommonSettings)
    configure_logging(service, common.log_level, common.log_format)
    return common


def _stopped_before_start(signum: int, frame: object) -> None:
    """SIGTERM while `serve` is still loading its service: nothing has started, so stop cleanly."""
    raise SystemExit(0)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run one service until SIGTERM."""
    # Loading a service takes seconds on a busy machine; a SIGTERM meanwhile (a rollout, compose
    # down) is a clean stop (exit 0), not death by signal. The service's own handlers take over
    # once it runs (lifecycle.stop_event).
    signal.signal(signal.SIGTERM, _stopped_before_start)
    _configure_logging(args.service)
    module = service_module(args.service)
    settings = load_settings(module.Settings)
    settings.require_nats_url()
    check_ports(settings)
    # A service may name start-up failures that deserve one line rather than a traceback.
    one_line: tuple[type[Exception], ...] = getattr(module, "START_ERRORS", ())
    try:
        asyncio.run(module.run(settings))
    except one_line as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Migrate the api's database to the newest schema and exit."""
    _configure_logging("migrate")
    # Alembic announces each of its plugins at INFO when loaded: noise in a one-shot's output.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    api = service_module("api")
    common = load_settings(CommonSettings)
    # The same database `up` would open: the URL when set, else SQLite in the data folder.
    where: dict[str, Any] = (
        {} if common.database_url else {"data_dir": args.data_dir or default_data_dir()}
    )
    from tonerwatch.up import SECRET_KEY_FILE

    key_file = Path(where.get("data_dir") or ".") / SECRET_KEY_FILE
    if where and not common.secret_key and key_file.exists():
        where["secret_key"] = key_file.read_text().strip()  # the key `up` made for this database
    settings = load_settings(api.Settings, **where)
    try:
        where_db = api.migrate(settings)
    except (api.DatabaseUnreachable, api.MigrationLockTimeout, SealingError) as exc:
        raise CliError(str(exc)) from None
    # Named, so a migrate Job that lost its TONERWATCH_DATABASE_URL shows it migrated SQLite.
    print(f"tonerwatch: the database schema is at the newest version ({where_db})")
    return 0


def check_ports(settings: object) -> None:
    """Raise PortInUse naming the first listening port (ops, web) another process holds."""
    ops_port = getattr(settings, "ops_port", None)
    if ops_port:
        ensure_port_free(
            getattr(settings, "ops_host", "127.0.0.1"), ops_port, "ops port", "TONERWATCH_OPS_PORT"
        )
    web_port = getattr(settings, "port", None)
    if isinstance(web_port, int) and web_port:
        ensure_port_free(
            getattr(settings, "host", "127.0.0.1"), web_port, "web/API port", "TONERWATCH_PORT"
        )


def cmd_poll(args: argparse.Namespace) -> int:
    """Poll one printer once."""
    return asyncio.run(poll_command(args))


def cmd_discover(args: argparse.Namespace) -> int:
    """Sweep ranges for printers without the services."""
    return int(
        asyncio.run(
            sweep_command(
                args.targets,
                args.community or ["public"],
                args.rate,
                args.time_limit,
                args.timeout,
                args.json,
                port=args.port,
                icmp_prepass=args.icmp,
            )
        )
    )


def cmd_up(args: argparse.Namespace) -> int:
    """Run the whole system."""
    # Loaded when run, not at every start: it pulls in httpx and SQLAlchemy (a second more for --help).
    from tonerwatch.up import fix_malloc_thresholds, limit_malloc_arenas, run_up

    limit_malloc_arenas()  # before the services start their threads
    fix_malloc_thresholds()  # before the services' imports and first peaks
    _configure_logging("tonerwatch")
    logging.getLogger("tonerwatch").debug("starting up")
    data_dir = args.data_dir or default_data_dir()
    return asyncio.run(run_up(data_dir, args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
