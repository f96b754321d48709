"""The `tokenrelay` command against a real server process: one-shot chat, the REPL (with
Ctrl-C stopping the answer, not the REPL), and `sessions list|show|delete`."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from tests.e2e.server_process import ServerProcess, tokenrelay_serve
from tokenrelay.cli import AnswerView
from tokenrelay.events import parse_event


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with tokenrelay_serve(Path(tmp_path_factory.mktemp("cli"))) as srv:
        yield srv


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokenrelay.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_shot_streams_the_answer_and_prints_the_session(server: ServerProcess) -> None:
    run = cli("chat", "--url", server.url, "부산에 대해 알려줘")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "This is tokenrelay's scripted answer to: 부산에 대해 알려줘\n"
    session_id = run.stderr.split("session: ")[1].split()[0]
    again = cli("chat", "--url", server.url, "--session", session_id, "더 알려줘")
    assert again.returncode == 0 and f"session: {session_id}" in again.stderr


def test_one_shot_shows_tools_and_reports_errors(server: ServerProcess) -> None:
    tools = {
        "scripted": {
            "tool_calls": [{"name": "calculate", "arguments": {"expression": "2+2"}}],
            "reply": "4",
        }
    }
    run = cli("chat", "--url", server.url, "--options", json.dumps(tools), "2+2?")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "4\n"
    assert "tool calculate" in run.stderr
    failed = cli("chat", "--url", server.url, "--session", "no/such", "hi")  # not an id
    assert failed.returncode == 1
    assert "VALIDATION_ERROR" in failed.stderr and "fix:" in failed.stderr
    unreachable = cli("chat", "--url", "http://127.0.0.1:9", "hi")
    assert unreachable.returncode == 2 and "tokenrelay serve" in unreachable.stderr


def test_repl_continues_the_conversation(server: ServerProcess) -> None:
    run = cli("chat", "--url", server.url, stdin="first\nsecond\n/session\n")
    assert run.returncode == 0, run.stderr
    assert "scripted answer to: first" in run.stdout
    assert "scripted answer to: second" in run.stdout
    session_id = run.stderr.split("session: ")[1].split()[0]
    shown = cli("sessions", "show", session_id, "--url", server.url, "--json")
    messages = json.loads(shown.stdout)["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["first", "second"]


def _read_until(process: subprocess.Popen[bytes], marker: bytes, deadline_s: float) -> bytes:
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + deadline_s
    while marker not in seen:
        assert time.monotonic() < deadline, f"never saw {marker!r}; got {seen!r}"
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(process.stdout.fileno(), 4096)
            assert chunk, f"stdout closed; got {seen!r}"
            seen += chunk
    return seen


def test_ctrl_c_stops_the_answer_not_the_repl(server: ServerProcess) -> None:
    stall = json.dumps({"scripted": {"reply": "one two three four", "stall_after": 2}})
    process = subprocess.Popen(
        [sys.executable, "-m", "tokenrelay.cli", "chat", "--url", server.url, "--options", stall],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None
    try:
        process.stdin.write(b"stop me\n")
        process.stdin.flush()
        _read_until(process, b"one two ", 30)
        process.send_signal(signal.SIGINT)
        _read_until(process, "› ".encode(), 30)  # back at the prompt
        process.stdin.write(b"/session\n/exit\n")
        process.stdin.flush()
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    text = stderr.decode()
    assert "stopped" in text
    session_id = text.split("session: ")[1].split()[0]
    shown = json.loads(cli("sessions", "show", session_id, "--url", server.url, "--json").stdout)
    answer = shown["messages"][-1]
    assert answer["role"] == "assistant" and answer["status"] == "interrupted"
    assert answer["content"] == "one two "


def test_sessions_list_show_delete(server: ServerProcess) -> None:
    made = cli("chat", "--url", server.url, "세션 목록 테스트")
    session_id = made.stderr.split("session: ")[1].split()[0]
    listed = cli("sessions", "list", "--url", server.url)
    assert listed.returncode == 0 and session_id in listed.stdout
    assert "세션 목록 테스트" in listed.stdout
    as_json = json.loads(cli("sessions", "list", "--url", server.url, "--json").stdout)
    assert session_id in [s["id"] for s in as_json]
    shown = cli("sessions", "show", session_id, "--url", server.url)
    assert "you: 세션 목록 테스트" in shown.stdout
    assert "assistant: This is tokenrelay's scripted answer" in shown.stdout
    deleted = cli("sessions", "delete", session_id, "--url", server.url, "--yes")
    assert deleted.returncode == 0
    gone = cli("sessions", "show", session_id, "--url", server.url)
    assert gone.returncode == 1 and "SESSION_NOT_FOUND" in gone.stderr


def test_retry_and_edit_one_shot_and_in_the_repl(server: ServerProcess) -> None:
    """Issue #23: `--retry` answers the last message again, `--edit ID` says a message again;
    in the REPL `/retry` and `/edit TEXT` (your last message). Earlier versions stay readable."""
    answer = "This is tokenrelay's scripted answer to: {}\n"
    made = cli("chat", "--url", server.url, "first question")
    session_id = made.stderr.split("session: ")[1].split()[0]
    retried = cli("chat", "--url", server.url, "--session", session_id, "--retry")
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout == answer.format("first question")
    shown = cli("sessions", "show", session_id, "--url", server.url, "--json")
    messages = json.loads(shown.stdout)["messages"]
    assert [m["superseded"] for m in messages] == [False, True, False]
    edited = cli(
        "chat", "--url", server.url, "--session", session_id, "--edit", messages[0]["id"], "다시"
    )
    assert edited.returncode == 0, edited.stderr
    assert edited.stdout == answer.format("다시")
    plain = cli("sessions", "show", session_id, "--url", server.url).stdout
    assert "earlier version" in plain and "you: 다시" in plain
    misuse = [
        cli("chat", "--url", server.url, "--retry"),
        cli("chat", "--url", server.url, "--session", session_id, "--retry", "a question"),
        cli("chat", "--url", server.url, "--session", session_id, "--edit", "x"),
    ]
    assert all(run.returncode == 2 for run in misuse)

    run = cli("chat", "--url", server.url, stdin="one\n/retry\n/edit two\n/session\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("scripted answer to: one") == 2
    assert "scripted answer to: two" in run.stdout
    repl_session = run.stderr.split("session: ")[1].split()[0]
    shown = cli("sessions", "show", repl_session, "--url", server.url, "--json")
    current = [m["content"] for m in json.loads(shown.stdout)["messages"] if not m["superseded"]]
    assert current == ["two", answer.format("two").strip()]
    early = cli("chat", "--url", server.url, stdin="/retry\n")
    assert early.returncode == 0 and "send a message first" in early.stderr


def test_live_view_renders_every_kind_of_event() -> None:
    view = AnswerView()
    events = [
        {
            "type": "metadata",
            "stream_id": "s",
            "session_id": "abc",
            "message_id": "m",
            "trace_id": "t",
            "provider": "scripted",
            "model": "x",
        },
        {"type": "progress", "step": "plan", "message": "Planning day 1", "progress": 40},
        {
            "type": "sources",
            "documents": [
                {"id": "d1", "title": "Busan notes", "snippet": "Haeundae beach", "score": 1.0}
            ],
        },
        {"type": "tool_call", "call_id": "c1", "tool": "calculate", "args": {"expression": "1+1"}},
        {"type": "tool_progress", "call_id": "c1", "tool": "calculate", "message": "adding"},
        {"type": "tool_result", "call_id": "c1", "tool": "calculate", "result": 2},
        {"type": "token", "content": "답은 2", "index": 0},
    ]
    for data in events:
        view.add(parse_event(json.dumps(data)))
    console = Console(record=True, width=80, color_system=None)
    console.print(view)
    screen = console.export_text()
    for expected in (
        "Planning day 1 (40%)",
        "[1] Busan notes",
        "calculate",
        "adding",
        "→ 2",
        "답은 2▍",
    ):
        assert expected in screen
    assert view.session_id == "abc"
    view.add(
        parse_event(
            json.dumps(
                {
                    "type": "done",
                    "session_id": "abc",
                    "message_id": "m",
                    "finish_reason": "stop",
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1},
                    "total_chunks": 1,
                    "ttft_s": 0.1,
                    "processing_time_s": 0.2,
                    "history_length": 2,
                }
            )
        )
    )
    console = Console(record=True, width=80, color_system=None)
    console.print(view)
    final = console.export_text()
    assert "▍" not in final and "stop · 1 tokens" in final
