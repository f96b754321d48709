"""`search_documents`: search the documents uploaded to this server (the retrieval store).

With API keys on, only the documents of the key the turn runs for are searched.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from tokenrelay.i18n import tr
from tokenrelay.retrieval.owned import scoped_store
from tokenrelay.tools.context import ToolContext, ToolError
from tokenrelay.tools.tool import tool


@tool
async def search_documents(
    query: Annotated[str, Field(min_length=1, max_length=1000)],
    ctx: ToolContext,
    top_k: Annotated[int, Field(ge=1, le=20)] = 5,
) -> dict[str, Any]:
    """Search the user's uploaded documents and return the best matching passages.

    Args:
        query: what to look for, in a few words
        top_k: how many passages to return, 1 to 20
    """
    if ctx.documents is None:
        raise ToolError(
            tr("no document store is available on this server, so documents cannot be searched")
        )

    store = scoped_store(ctx.documents, ctx.owner)  # with API keys on: the caller's documents
    await ctx.progress(tr("Searching documents for {query!r}", query=query))
    hits = await store.search(query, top_k=top_k)
    results = [hit.to_source() for hit in hits]
    return {"query": query, "count": len(results), "results": results}
