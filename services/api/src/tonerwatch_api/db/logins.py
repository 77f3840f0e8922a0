"""Login failures table."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer
from sqlmodel import Field, SQLModel


class LoginFailure(SQLModel, table=True):
    """One failed (or in-flight) login attempt, counted against one username or address."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_at", "key", "at"),)
    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    key: str = Field(max_length=80)
    # Seconds since the epoch (the limiter's clock): compared only with each other.
    at: float = Field(sa_column=Column(Float(), nullable=False, index=True))
    attempt: str = Field(max_length=32)


LOGIN_LIMIT_TABLES: tuple[type[SQLModel], ...] = (LoginFailure,)
