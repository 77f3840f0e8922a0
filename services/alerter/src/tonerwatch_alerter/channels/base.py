"""What every channel shares: which events it takes, and how a failed delivery is reported."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tonerwatch_alerter.rules import Severity
from tonerwatch_shared.events import (
    AlertResolved,
    Event,
    SiteOffline,
    SiteOnline,
    SupplyReplaced,
    ThresholdCrossed,
)

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
# A site's collector gone silent: every printer of the site unwatched (the api's alert is critical).
SITE_OFFLINE_SEVERITY = "critical"


class DeliveryFailed(Exception):
    """The receiver did not take the event; `permanent` when retrying cannot help (4xx, 5xx SMTP)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ChannelConfig(BaseModel):
    """Name and filter of one channel; the name also names its durable consumer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    sites: tuple[str, ...] = Field(default=(), description="Only these sites; empty: all")
    min_severity: Severity = "warning"
    resolved: bool = Field(
        default=True, description="Also send AlertResolved (not those superseded by a worse alert)"
    )
    replaced: bool = Field(default=False, description="Also send SupplyReplaced (new cartridges)")
    attempts: int = Field(default=3, ge=1, le=10, description="Tries per delivery before a nak")
    backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=10.0, ge=0)
    timeout_s: float = Field(default=10.0, gt=0)

    def wants(self, event: Event) -> bool:
        """Return whether this channel is sent event (crossings at min_severity or above, resolutions,
        swaps, a site going offline and coming back)."""
        if self.sites and event.site_id not in self.sites:
            return False
        if isinstance(event, ThresholdCrossed):
            return SEVERITY_RANK[event.severity] >= SEVERITY_RANK[self.min_severity]
        if isinstance(event, SupplyReplaced):
            return self.replaced
        if isinstance(event, SiteOffline):
            return SEVERITY_RANK[SITE_OFFLINE_SEVERITY] >= SEVERITY_RANK[self.min_severity]
        if isinstance(event, SiteOnline):
            return self.resolved
        # A superseded alert goes on under a worse one, whose own crossing is the news.
        return self.resolved and isinstance(event, AlertResolved) and event.superseded_by is None

    def backoff(self, attempt: int) -> float:
        """Return the pause before try attempt + 1 (exponential, capped)."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))

    def worst_case_s(self) -> float:
        """Return how long one delivery may take with all its tries (bounds the consumer's ack wait)."""
        return self.attempts * (self.timeout_s + self.max_backoff_s * 1.2)
