"""TonerWatch: the `tonerwatch` command and what it runs (up, serve, collector, hub, ...)."""

from tonerwatch_shared.lean_imports import skip_unused_imports

# First thing, before anything imports nats or httpx: they would load aiohttp and rich for nothing.
skip_unused_imports()
