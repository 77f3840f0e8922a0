"""`python -m tonerwatch` is the `tonerwatch` command."""

import signal
import sys


def _stopped_before_start(signum: int, frame: object) -> None:
    """SIGTERM while `serve` is still loading: nothing has started, so stop cleanly (exit 0)."""
    raise SystemExit(0)


# Loading the command and its service takes seconds on a busy machine; a SIGTERM meanwhile (a
# rollout, compose down, a test stopping it early) is a clean stop, not death by signal. cli's
# cmd_serve sets the same handler for the `tonerwatch` script; the service's own take over once
# it runs (tonerwatch_shared.lifecycle.stop_event).
if sys.argv[1:2] == ["serve"]:
    signal.signal(signal.SIGTERM, _stopped_before_start)

from tonerwatch.cli import main  # noqa: E402 - after the handler: importing takes a while

sys.exit(main())
