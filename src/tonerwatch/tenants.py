"""`tonerwatch tenant`: a provider's customer tenants, through the api's REST interface.

REST rather than the database: the same command works against `tonerwatch up` on this machine,
compose or a remote hub, needs no database credentials, and goes through the api's own checks,
audit log and event outbox (a new site is announced to the other services as from the UI)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tonerwatch.services import CliError

DEFAULT_URL = "http://127.0.0.1:8080"
TIMEOUT_S = 15.0
PAGE = 500


def add_tenant_parser(sub: Any) -> None:
    """Add `tenant create|list|disable|enable|api` to the command's subparsers."""
    tenant = sub.add_parser(
        "tenant",
        help="manage customer tenants (provider role) through the REST API",
        description="Customer tenants of a managed-print provider, through the api's REST "
        "interface: works with `tonerwatch up`, compose or a remote hub. Authenticate with an "
        "API token of a provider user (TONERWATCH_TOKEN, or --token), or with --user and the "
        "password from TONERWATCH_PASSWORD or a prompt.",
    )
    reach = argparse.ArgumentParser(add_help=False)
    reach.add_argument(
        "--url",
        default=os.environ.get("TONERWATCH_URL", DEFAULT_URL),
        help=f"the api's address (env TONERWATCH_URL, default {DEFAULT_URL})",
    )
    reach.add_argument("--token", default=None, help="API token (env TONERWATCH_TOKEN)")
    reach.add_argument("--user", default=None, help="log in as this user instead of a token")
    actions = tenant.add_subparsers(dest="tenant_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a customer tenant", parents=[reach])
    create.add_argument("id", help="tenant id: short, lower-case, never changes")
    create.add_argument("--name", required=True, help="the customer's name")
    create.add_argument("--site", default=None, help="id of its first site")
    create.add_argument("--site-name", default=None, help="name of its first site")
    create.add_argument(
        "--admin-email", default=None, help="its first admin (also the username unless --admin)"
    )
    create.add_argument("--admin", default=None, help="the first admin's username")
    create.add_argument("--json", action="store_true", help="print the api's answer as JSON")
    listing = actions.add_parser("list", help="list every tenant", parents=[reach])
    listing.add_argument("--json", action="store_true", help="one JSON object per tenant")
    for verb in ("disable", "enable"):
        one = actions.add_parser(verb, help=f"{verb} a customer tenant", parents=[reach])
        one.add_argument("id")
    call = actions.add_parser(
        "api",
        help="call the REST API, in the tenant --tenant names (switch to a customer)",
        description="Call one /api/v1 endpoint and print its JSON answer: with --tenant ID (or "
        "TONERWATCH_TENANT) as a provider acting in that customer tenant (the "
        "X-TonerWatch-Tenant header: everything scopes to it, the audit log records who acted), "
        "e.g. `tonerwatch tenant api --tenant acme PATCH /sites/acme-hq --data "
        "'{\"monitor_found\": true}'`.",
        parents=[reach],
    )
    call.add_argument(
        "--tenant",
        default=os.environ.get("TONERWATCH_TENANT") or None,
        metavar="ID",
        help="act in this customer tenant, as its own admin would (providers only; env "
        "TONERWATCH_TENANT: `export TONERWATCH_TENANT=acme` switches a shell to ACME)",
    )
    call.add_argument("method", type=str.upper, choices=["GET", "POST", "PUT", "PATCH", "DELETE"])
    call.add_argument("path", help="below /api/v1, e.g. /sites or /printers?site=acme-hq")
    call.add_argument("--data", default=None, help="JSON body")


def tenant_command(args: argparse.Namespace) -> int:
    """Run one `tonerwatch tenant` action; return the exit code."""
    api = Rest(args.url.rstrip("/"), _token(args), tenant=getattr(args, "tenant", None))
    if args.tenant_command == "api":
        return _call(api, args)
    if args.tenant_command == "create":
        return _create(api, args)
    if args.tenant_command == "list":
        return _list(api, args)
    made = api.call("PATCH", f"/tenants/{args.id}", {"disabled": args.tenant_command == "disable"})
    print(f"{made['id']}: {'disabled' if made['disabled'] else 'active'}")
    return 0


def _create(api: Rest, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"id": args.id, "name": args.name}
    if args.site:
        body["site"] = {"id": args.site, "name": args.site_name}
    if args.admin or args.admin_email:
        body["admin"] = {"username": args.admin or args.admin_email, "email": args.admin_email}
    made = api.call("POST", "/tenants", body)
    if args.json:
        print(json.dumps(made))
        return 0
    print(f"tenant {made['tenant']['id']} ({made['tenant']['name']}) created")
    if made.get("site"):
        print(f"first site: {made['site']['id']}")
    if made.get("admin"):
        print(f"first admin: {made['admin']['username']}")
    if made.get("admin_password"):
        print(f"their password (shown once): {made['admin_password']}")
    return 0


def _call(api: Rest, args: argparse.Namespace) -> int:
    path = args.path if args.path.startswith("/") else f"/{args.path}"
    try:
        body = json.loads(args.data) if args.data is not None else None
    except ValueError as exc:
        raise CliError(f"--data is not JSON: {exc}") from None
    data = json.dumps(body).encode() if body is not None else None
    answer = api.send(args.method, path, data, "application/json")
    if answer is not None:
        print(json.dumps(answer, indent=2))
    return 0


def _list(api: Rest, args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {"sort": "id", "limit": str(PAGE), **({"cursor": cursor} if cursor else {})}
        page = api.call("GET", "/tenants?" + urllib.parse.urlencode(query))
        rows += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'ID':<20} {'NAME':<30} {'SITES':>5} {'USERS':>5}  STATE")
    for t in rows:
        state = "disabled" if t["disabled"] else ("provider" if t["provider"] else "active")
        print(f"{t['id']:<20} {t['name'][:30]:<30} {t['sites']:>5} {t['users']:>5}  {state}")
    return 0


def _token(args: argparse.Namespace) -> str:
    if args.user:
        password = os.environ.get("TONERWATCH_PASSWORD") or getpass.getpass(
            f"password of {args.user}: "
        )
        form = urllib.parse.urlencode({"username": args.user, "password": password}).encode()
        answer = Rest(args.url.rstrip("/"), "").send(
            "POST", "/auth/token", form, "application/x-www-form-urlencoded"
        )
        return str(answer["access_token"])
    token = args.token or os.environ.get("TONERWATCH_TOKEN")
    if not token:
        raise CliError("no credentials: set TONERWATCH_TOKEN (a provider's API token) or --user")
    return token


class Rest:
    """The api's /api/v1, authenticated with a bearer token."""

    def __init__(self, url: str, token: str, tenant: str | None = None) -> None:
        self.url = url
        self.token = token
        self.tenant = tenant  # a provider acting in this customer tenant

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Return the decoded JSON answer of method path (with a JSON body)."""
        data = json.dumps(body).encode() if body is not None else None
        return self.send(method, path, data, "application/json")

    def send(self, method: str, path: str, data: bytes | None, content_type: str) -> Any:
        """Return the decoded JSON answer; an error answer or no answer raises CliError."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.tenant:
            headers["X-TonerWatch-Tenant"] = self.tenant
        request = urllib.request.Request(
            f"{self.url}/api/v1{path}", data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            raise CliError(f"{method} {path}: {exc.code} {_error_text(exc)}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise CliError(f"cannot reach the api at {self.url}: {exc}") from exc
        return json.loads(raw) if raw else None


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error", exc.reason))
    except (ValueError, AttributeError):
        return str(exc.reason)
