"""schemathesis over every API operation: no 5xx, every response as the OpenAPI document says.

The api runs with embedded NATS and SQLite (no poller, no discovery) inside a network namespace
that has only loopback (`unshare --net`), so the documentation addresses and host names in the
OpenAPI examples cannot reach anything. tests/api_fuzz_netns.py does the work inside; this test
starts it and reads its verdict. Bounded: examples per operation and a time budget.

Needs `unshare` with the right to make a network namespace (root, or unprivileged user
namespaces): without it the test fails in CI and is skipped with the reason elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
MAX_EXAMPLES = int(os.environ.get("TONERWATCH_FUZZ_MAX_EXAMPLES", "5"))
MAX_TIME_S = int(os.environ.get("TONERWATCH_FUZZ_MAX_TIME_S", "100"))

pytestmark = pytest.mark.timeout(MAX_TIME_S + 180)


def _unshare_command() -> list[str]:
    """Return the command that enters a loopback-only namespace, or fail/skip saying why."""
    reason = ""
    unshare = shutil.which("unshare")
    if unshare is None:
        reason = "unshare (util-linux) is not installed"
    else:
        command = (
            [unshare, "--net"]
            if os.geteuid() == 0
            else [unshare, "--user", "--map-root-user", "--net"]
        )
        probe = subprocess.run([*command, "true"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return command
        reason = f"cannot make a network namespace ({' '.join(command)}): {probe.stderr.strip()}"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the API fuzzing must run)")
    pytest.skip(reason)


def test_every_operation_answers_without_5xx_and_as_documented(tmp_path: Path) -> None:
    command = _unshare_command()
    if shutil.which("ip") is None:
        pytest.fail("the `ip` command (iproute2) is needed to bring up lo in the namespace")
    run = subprocess.run(
        [
            *command,
            "--",
            sys.executable,
            str(HERE / "api_fuzz_netns.py"),
            "--data-dir",
            str(tmp_path),
            "--max-examples",
            str(MAX_EXAMPLES),
            "--max-time",
            str(MAX_TIME_S),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=MAX_TIME_S + 150,
    )
    out = run.stdout + run.stderr
    api_log = tmp_path / "api.log"
    detail = out[-12000:] + (
        "\n--- api log ---\n" + api_log.read_text()[-4000:] if api_log.exists() else ""
    )
    assert run.returncode == 0, detail
    # The run really tested: every operation selected, test cases generated, none failed.
    assert "Tested:" in out and " passed" in out, detail
    assert "failed" not in out.split("SUMMARY")[-1].split("Test cases:")[-1], detail
    assert "Traceback" not in (api_log.read_text() if api_log.exists() else ""), detail
