"""The OpenAPI document: FastAPI's, plus the routes served in front of FastAPI.

`POST /api/chat/stream` is answered by `ChatStreamRoute` (server/chat_stream_route.py), a pure
ASGI route that is defined once, there. Its entry in the document is made here from the same
`ChatRequest` model it validates with, the way FastAPI's "Extending OpenAPI" recipe adds to the
generated schema (`app.openapi` replaced by a function that builds it once).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from tokenrelay.server.chat_stream_route import PATH as CHAT_STREAM_PATH
from tokenrelay.server.schemas import ChatRequest

REF = "#/components/schemas/{model}"


def add_operation(
    schema: dict[str, Any],
    path: str,
    method: str,
    body: type[BaseModel],
    *,
    summary: str,
    description: str,
    response_media_type: str,
) -> None:
    """One operation with a JSON body of model `body` (its schemas into the components)."""
    body_schema = body.model_json_schema(ref_template=REF)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, sub in body_schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components[body.__name__] = body_schema
    error = {"$ref": "#/components/schemas/HTTPValidationError"}
    schema.setdefault("paths", {}).setdefault(path, {})[method] = {
        "tags": ["chat"],
        "summary": summary,
        "description": description,
        "operationId": f"{method}_{path.strip('/').replace('/', '_')}",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=body.__name__)}}},
        },
        "responses": {
            "200": {
                "description": "the stream, until exactly one terminal event",
                "content": {response_media_type: {"schema": {"type": "string"}}},
            },
            "422": {
                "description": "Validation Error",
                "content": {"application/json": {"schema": error}},
            },
        },
    }


def install_openapi(api: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = get_openapi(
                title=api.title,
                version=api.version,
                description=api.description,
                routes=api.routes,
            )
            add_operation(
                schema,
                CHAT_STREAM_PATH,
                "post",
                ChatRequest,
                summary="Stream an answer as Server-Sent Events",
                description="The events of docs/protocol.md; resume with "
                "`GET /api/streams/{stream_id}` and `Last-Event-ID`.",
                response_media_type="text/event-stream",
            )
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
