"""Root pytest configuration: fixtures for real NATS, PostgreSQL and simulated printers."""

pytest_plugins = [
    "tonerwatch_shared.testing.infra",
    "tonerwatch_shared.testing.printers",
]
