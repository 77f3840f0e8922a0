"""The web UI: HTML pages that call the domain (never the REST routes)."""
