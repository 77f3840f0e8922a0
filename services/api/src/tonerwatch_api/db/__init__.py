"""Storage: the SQLModel tables, their alembic migrations and the transaction helpers."""
