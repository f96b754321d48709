"""Liveness, readiness and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from tokenrelay import __version__
from tokenrelay.server.deps import get_services
from tokenrelay.server.readiness import Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, Any]:
    return {"status": "ok", "version": __version__}


@router.get("/readyz", summary="Ready to accept new streams")
async def readyz(request: Request) -> Response:
    """503 while draining, or while a configured Redis or PostgreSQL is unreachable (checked
    at most once a second, `server/readiness.py`); ready again on its own."""
    services = get_services(request)
    readiness: Readiness | None = getattr(request.app.state, "readiness", None)
    backends = await readiness.backends() if readiness is not None else {}
    down = sorted(name for name, state in backends.items() if state != "ok")
    accepting = services.runner.accepting
    if not accepting:
        status = "draining"
    elif down:
        status = "unavailable"
    else:
        status = "ready"
    body: dict[str, Any] = {
        "status": status,
        "active_streams": services.runner.active,
        "provider": services.settings.provider,
        "backends": backends,
    }
    if down:
        body["unreachable"] = down
    ready = status == "ready"
    headers = None if ready else {"Retry-After": "1"}
    return JSONResponse(body, status_code=200 if ready else 503, headers=headers)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    return Response(get_services(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)
