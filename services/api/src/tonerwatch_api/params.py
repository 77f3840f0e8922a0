"""Path parameters of the REST API, described once for the OpenAPI document."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from tonerwatch_api.schemas import EXAMPLE_PRINTER_ID

SiteId = Annotated[str, Path(description="Site id (as created)", examples=["acme-hq"])]
PrinterId = Annotated[
    str,
    Path(description="Printer id (from GET /printers)", examples=[EXAMPLE_PRINTER_ID]),
]
AlertRowId = Annotated[
    int, Path(description="The alert occurrence's id (AlertOut.id, not alert_id)", examples=[1873])
]
TokenId = Annotated[int, Path(description="API token id (from GET /tokens)", examples=[12])]
UserId = Annotated[int, Path(description="User id (from GET /users)", examples=[7])]
GroupId = Annotated[int, Path(description="Printer group id (from GET /groups)", examples=[3])]
OrderId = Annotated[
    str, Path(description="Order id (from GET /orders)", examples=["o-8c1d2e3f4a5b"])
]
JobId = Annotated[
    str,
    Path(
        description="Discovery job id (from POST /discovery/jobs)",
        examples=["j-5e0c1a7b9d24"],
    ),
]

__all__ = ["AlertRowId", "GroupId", "JobId", "OrderId", "PrinterId", "SiteId", "TokenId", "UserId"]
