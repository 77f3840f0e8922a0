"""Pytest plugin: simulated printers (snmpsim on loopback) — filled in by the SNMP work."""
