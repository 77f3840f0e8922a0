"""TonerWatch: the `tonerwatch` command and what it runs (up, serve, collector, hub, ...)."""

import gc

from tonerwatch_shared.lean_imports import skip_unused_imports

# First thing, before anything imports nats or httpx: they would load aiohttp and rich for nothing.
skip_unused_imports()

# Young collections every 10,000 allocations instead of CPython's 700 (issue 15). A batch of
# readings keeps thousands of objects alive through its transaction: at 700 each young collection
# promoted them, and the full collections that promotion set off traversed the whole heap (the
# four-week ingestion bench: 20 full collections, 3.8 s of CPU, against 2 and 0.55 s; 1.1-1.5x
# the api's readings/s, 0-15 % less CPU per poll in `up`, its PSS ~1.6 MB higher on average;
# bench/E2E.md, "api ingestion in service"). What reference counting frees (nearly everything) is
# freed as before; only cycles wait longer. Set for every process that imports this package.
gc.set_threshold(10_000, 10, 10)
