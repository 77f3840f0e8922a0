"""TonerWatch: the `tonerwatch` command and what it runs (up, serve, collector, hub, ...)."""

import gc

from tonerwatch_shared.lean_imports import skip_unused_imports

# First thing, before anything imports nats or httpx: they would load aiohttp and rich for nothing.
skip_unused_imports()

# Young collections every 10,000 allocations instead of CPython's 700 (issue 15). A batch of
# readings keeps thousands of objects alive through its transaction: at 700 each young collection
# promoted them, and the full collections that promotion set off traversed the whole heap, ~13 %
# of the api's CPU at full ingestion rate (bench/E2E.md). What is freed by reference counting
# (nearly everything) is freed as before; only cycles wait a little longer.
gc.set_threshold(10_000, 10, 10)
