"""The rules of each resource, over the tables; no HTTP here (errors are domain.errors)."""
