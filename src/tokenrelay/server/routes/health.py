"""Liveness, readiness and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from tokenrelay import __version__
from tokenrelay.server.deps import get_services

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, Any]:
    return {"status": "ok", "version": __version__}


@router.get("/readyz", summary="Ready to accept new streams")
async def readyz(request: Request) -> Response:
    services = get_services(request)
    ready = services.runner.accepting
    body = {
        "status": "ready" if ready else "draining",
        "active_streams": services.runner.active,
        "provider": services.settings.provider,
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    return Response(get_services(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)
