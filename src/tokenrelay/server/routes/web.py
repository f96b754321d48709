"""The chat page: `/` and its static files from the package's `web/` folder (no build step)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response

WEB_DIR = Path(str(files("tokenrelay") / "web"))
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",  # the page's catalogues, i18n-<lang>.json
}
# the page is small and changes with the package: browsers revalidate rather than guess
_NO_STALE = {"Cache-Control": "no-cache"}

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/")
async def index() -> Response:
    return FileResponse(WEB_DIR / "index.html", media_type=_TYPES[".html"], headers=_NO_STALE)


@router.get("/static/{name}")
async def static(name: str = PathParam(pattern=r"^[a-z0-9_-]+\.[a-z]+$")) -> Response:
    """Only plain file names of the web folder with a known type: nothing else is reachable."""
    path = WEB_DIR / name
    media_type = _TYPES.get(path.suffix)
    if media_type is None or not path.is_file():
        return JSONResponse({"detail": "not found"}, status_code=404)
    return FileResponse(path, media_type=media_type, headers=_NO_STALE)
