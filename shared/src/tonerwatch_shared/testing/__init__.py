"""Test support shipped with the library: real servers (NATS, PostgreSQL, snmpsim) on loopback for tests."""
