"""``GET /audit``: the capped list of operator actions (needs the mutation API key)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from management_service.deps import ManagerDep, OperatorDep
from management_service.schemas import NEEDS_KEY, UNAVAILABLE, AuditOut

router = APIRouter(tags=["audit"])


@router.get(
    "/audit",
    response_model=AuditOut,
    responses=NEEDS_KEY | UNAVAILABLE,
)
async def audit_log(
    manager: ManagerDep,
    _operator: OperatorDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditOut:
    """Operator actions, newest first: action, outcome, event, account, command, client."""
    return AuditOut(entries=await manager.audit_log(limit), limit=limit)
