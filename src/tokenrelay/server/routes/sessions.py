"""Session endpoints: list, history, delete."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from tokenrelay.server.deps import get_services, owner_of
from tokenrelay.server.json_checks import CheckedRoute
from tokenrelay.server.schemas import ID_PATTERN
from tokenrelay.sessions.base import session_not_found
from tokenrelay.sessions.versions import with_versions

router = APIRouter(route_class=CheckedRoute, tags=["sessions"])


@router.get("/api/sessions", summary="Your sessions, most recent first")
async def list_sessions(
    request: Request,
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=1_000_000_000),
) -> dict[str, Any]:
    services = get_services(request)
    sessions = await services.sessions.list_sessions(
        owner=owner_of(request), limit=limit, offset=offset
    )
    return {"sessions": [asdict(s) for s in sessions]}


@router.get(
    "/api/sessions/{session_id}",
    summary="A session and its messages, each with `superseded` and its earlier `versions`",
)
async def get_session(
    request: Request, session_id: str = Path(pattern=ID_PATTERN)
) -> dict[str, Any]:
    services = get_services(request)
    info = await services.sessions.get_session(session_id, owner=owner_of(request))
    if info is None:
        raise session_not_found(session_id)
    messages = await services.sessions.messages(session_id)
    return {**asdict(info), "messages": with_versions(messages)}


@router.delete("/api/sessions/{session_id}", status_code=204, summary="Delete a session")
async def delete_session(request: Request, session_id: str = Path(pattern=ID_PATTERN)) -> Response:
    services = get_services(request)
    if not await services.sessions.delete_session(session_id, owner=owner_of(request)):
        raise session_not_found(session_id)
    return Response(status_code=204)
