"""docs/i18n.md's request, sent as written: the answer's stream and its error in Korean."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.helpers import chat_stream

DOC = Path(__file__).resolve().parents[2] / "docs" / "i18n.md"


async def test_the_documented_request_is_answered_in_korean(live_server) -> None:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    body = json.loads(blocks[0])
    body["options"]["scripted"] = {"reply": "서울", "error_after": 1}
    async with live_server() as srv:
        result = await chat_stream(srv.url, body, headers={"Accept-Language": "en"})
    assert result.types == ["metadata", "token", "error"]
    assert result.last()["message"] == "스크립트대로 1조각 뒤에 실패했습니다"
