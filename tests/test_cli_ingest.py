"""`tokenrelay ingest`: files and folders into the store the server then searches."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from tests.helpers import chat_stream
from tokenrelay.cli import app


async def test_ingest_a_folder_then_chat_finds_it(live_server, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "nested").mkdir(parents=True)
    (docs / "palace.md").write_text(
        "# 경복궁\n\n경복궁의 입장료는 3,000원이다.\n", encoding="utf-8"
    )
    (docs / "nested" / "beach.txt").write_text("Haeundae beach is in Busan.\n", encoding="utf-8")
    (docs / "image.png").write_bytes(b"\x89PNG\r\n")
    data_dir = tmp_path / "data"

    runner = CliRunner()
    args = ["ingest", str(docs), "--data-dir", str(data_dir), "--meta", "team=travel"]
    # the command runs its own event loop: give it a thread, as a shell would give it a process
    first = await asyncio.to_thread(runner.invoke, app, args)
    again = await asyncio.to_thread(runner.invoke, app, args)
    bad_args = ["ingest", str(docs), "--data-dir", str(data_dir), "--meta", "x"]
    bad = await asyncio.to_thread(runner.invoke, app, bad_args)

    assert first.exit_code == 0, first.output
    assert "2 created" in first.output  # the .png is not a document type: left out
    assert again.exit_code == 0 and "2 unchanged" in again.output  # same content, no duplicates
    assert bad.exit_code == 2 and "key=value" in bad.output

    async with live_server(data_dir=data_dir) as srv:
        result = await chat_stream(
            srv.url, {"message": "경복궁에 입장료가 있나요?", "options": {"rag": True}}
        )
    documents = result.events[1].json["documents"]
    assert documents[0]["title"] == "경복궁"
    assert documents[0]["metadata"]["team"] == "travel"
