"""Root pytest configuration: fixtures for real NATS, PostgreSQL and simulated printers."""

from tonerwatch_shared.lean_imports import skip_unused_imports

# Tests import what `tonerwatch` processes import, the way they do: models built at first use,
# no pydantic.v1, uvicorn without its command line (tonerwatch/__init__.py does it first thing).
skip_unused_imports()

pytest_plugins = [
    "tonerwatch_shared.testing.infra",
    "tonerwatch_shared.testing.printers",
]
