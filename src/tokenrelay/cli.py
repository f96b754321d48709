"""The `tokenrelay` command: serve, chat (one question, or a REPL), sessions, ingest."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tokenrelay.client import DEFAULT_URL, ChatStream, Client, TokenRelayAPIError
from tokenrelay.events import Event

app = typer.Typer(
    help="tokenrelay: stream LLM answers over Server-Sent Events.",
    no_args_is_help=True,
    add_completion=False,
)
sessions_app = typer.Typer(help="List, show and delete conversations.", no_args_is_help=True)
app.add_typer(sessions_app, name="sessions")
err = Console(stderr=True)
out = Console(highlight=False)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="interface to bind [TOKENRELAY_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port [TOKENRELAY_PORT]")] = None,
    provider: Annotated[
        str | None,
        typer.Option(help="local | scripted | openai | anthropic | gemini [TOKENRELAY_PROVIDER]"),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="model name for the provider [TOKENRELAY_MODEL]")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="where the SQLite file lives [TOKENRELAY_DATA_DIR]")
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible server URL, e.g. vLLM or Ollama [OPENAI_BASE_URL]"),
    ] = None,
) -> None:
    """Run the server (defaults: 127.0.0.1:8000, the bundled local model, SQLite)."""
    # lazy: the server (FastAPI, uvicorn: about a second of imports) only for `serve`
    from tokenrelay.config import Settings
    from tokenrelay.logs import configure_logging, secrets_of
    from tokenrelay.server.serve import run

    given: dict[str, Any] = {
        "host": host,
        "port": port,
        "provider": provider,
        "model": model,
        "data_dir": data_dir,
        "openai_base_url": base_url,
    }
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    configure_logging(settings.log_level, secrets=secrets_of(settings))
    err.print(
        f"tokenrelay on http://{settings.host}:{settings.port} "
        f"(provider {settings.provider}, data in {settings.data_dir})"
    )
    run(settings)


# -- rendering one answer ---------------------------------------------------------------------


class AnswerView:
    """What one streaming answer looks like in a terminal. Fed with events; no I/O."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.sources: list[tuple[str, str]] = []
        self.tools: dict[str, dict[str, Any]] = {}
        self.progress: tuple[str, float] | None = None
        self.status = ""
        self.streaming = True
        self.footer = ""
        self.error: TokenRelayAPIError | None = None
        self.session_id: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add(self, event: Event) -> None:
        if event.type == "metadata":
            self.session_id = event.session_id or None
        elif event.type == "sources":
            self.sources = [(d.title or d.id, d.snippet) for d in event.documents]
        elif event.type == "status":
            self.status = event.message
        elif event.type == "progress":
            self.progress = (event.message, event.progress)
        elif event.type == "token":
            self.status = ""
            self.parts.append(event.content)
        elif event.type == "tool_call":
            self.tools[event.call_id] = {"tool": event.tool, "args": event.args, "steps": []}
        elif event.type == "tool_progress":
            self._tool(event.call_id, event.tool)["steps"].append(event.message)
        elif event.type == "tool_result":
            entry = self._tool(event.call_id, event.tool)
            entry["error"] = event.error
            entry["result"] = event.result
            entry["finished"] = True
        elif event.type == "complete":
            self.tools["__result__"] = {"tool": "result", "args": {}, "steps": []}
            self.tools["__result__"].update(result=event.result, finished=True, error=None)
        elif event.type == "done":
            usage = event.usage
            self.finish(f"{event.finish_reason} · {usage.completion_tokens} tokens")
        elif event.type == "error":
            self.error = TokenRelayAPIError.from_event(event)
            self.finish("stopped" if event.code == "CANCELLED" else "")

    def _tool(self, call_id: str, tool: str) -> dict[str, Any]:
        return self.tools.setdefault(call_id, {"tool": tool, "args": {}, "steps": []})

    def finish(self, footer: str) -> None:
        self.streaming = False
        self.status = ""
        self.footer = footer

    def __rich__(self) -> RenderableType:
        parts: list[RenderableType] = []
        if self.progress is not None:
            message, value = self.progress
            parts += [Text(f"{message} ({value:.0f}%)", style="cyan"), ProgressBar(100, value)]
        if self.sources:
            parts.append(Text("Sources:", style="bold"))
            for i, (title, snippet) in enumerate(self.sources, 1):
                line = Text(f"  [{i}] {title}", style="bold")
                line.append(f" — {_short(snippet, 80)}", style="dim")
                parts.append(line)
        for entry in self.tools.values():
            parts += _tool_lines(entry)
        if self.status and self.streaming:
            parts.append(Text(self.status, style="dim italic"))
        parts.append(Text(self.text + ("▍" if self.streaming else "")))
        if self.footer:
            parts.append(Text(self.footer, style="dim"))
        return Group(*parts)


def _short(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tool_lines(entry: dict[str, Any]) -> list[Text]:
    if not entry.get("finished"):
        state, style = "running…", "yellow"
    elif entry.get("error"):
        state, style = f"failed: {entry['error']}", "red"
    else:
        state, style = "done", "green"
    head = Text("⚙ ", style="dim")
    head.append(entry["tool"], style="bold")
    head.append(f"({_short(entry['args'], 60)}) " if entry["args"] else " ", style="dim")
    head.append(state, style=style)
    lines = [head] + [Text(f"    {step}", style="dim") for step in entry["steps"]]
    if entry.get("finished") and not entry.get("error"):
        lines.append(Text(f"    → {_short(entry.get('result'), 100)}", style="dim"))
    return lines


def _plain(event: Event) -> None:
    """Pipe-friendly output: the answer on stdout, everything else on stderr."""
    if event.type == "token":
        sys.stdout.write(event.content)
        sys.stdout.flush()
    elif event.type == "sources":
        for doc in event.documents:
            err.print(f"[dim]source: {escape(doc.title or doc.id)}[/dim]")
    elif event.type == "tool_call":
        err.print(f"[dim]tool {escape(event.tool)}({escape(_short(event.args, 60))})[/dim]")
    elif event.type == "tool_result":
        what = f"failed: {event.error}" if event.error else _short(event.result, 100)
        err.print(f"[dim]tool {escape(event.tool)} → {escape(what)}[/dim]")
    elif event.type == "progress":
        err.print(f"[dim]{event.progress:.0f}% {escape(event.message)}[/dim]")


def _stop(stream: ChatStream) -> bool:
    """Cancel the stream on the server and close our connection; True if it was running."""
    try:
        return stream.cancel()
    except (TokenRelayAPIError, httpx.TransportError):
        return False
    finally:
        stream.close()


def run_answer(stream: ChatStream, *, live: bool) -> AnswerView:
    """Show one answer as it streams. Ctrl-C stops it on the server, not the program."""
    view = AnswerView()
    if live:
        with Live(view, console=out, refresh_per_second=15, vertical_overflow="visible") as screen:
            try:
                for event in stream:
                    view.add(event)
            except KeyboardInterrupt:
                stopped = _stop(stream)
                view.finish("stopped" if stopped else "stopped (it had already ended)")
            screen.refresh()
        return view
    try:
        for event in stream:
            view.add(event)
            _plain(event)
    except KeyboardInterrupt:
        stopped = _stop(stream)
        view.finish("stopped")
        err.print("\n[yellow]stopped[/yellow]" + ("" if stopped else " (it had already ended)"))
    sys.stdout.write("\n")
    return view


def _report(exc: TokenRelayAPIError) -> None:
    err.print(f"[red]{escape(exc.code)}[/red]: {escape(exc.message)}")
    if exc.suggestion:
        err.print(f"[yellow]fix:[/yellow] {escape(exc.suggestion)}")


@contextmanager
def _handled(url: str) -> Iterator[None]:
    """Server errors and an unreachable server become a clear message and an exit code."""
    try:
        yield
    except TokenRelayAPIError as exc:
        _report(exc)
        raise typer.Exit(1) from exc
    except httpx.TransportError as exc:
        err.print(f"[red]cannot reach {escape(url)}[/red]: {escape(str(exc))}")
        err.print("[yellow]fix:[/yellow] start the server with `tokenrelay serve` or pass --url")
        raise typer.Exit(2) from exc


def _options(
    provider: str | None, model: str | None, rag: bool, raw: str | None
) -> dict[str, Any] | None:
    options: dict[str, Any] = {}
    if raw:
        try:
            options = json.loads(raw)
        except ValueError as exc:
            raise typer.BadParameter(f"--options is not JSON: {exc}") from exc
        if not isinstance(options, dict):
            raise typer.BadParameter("--options must be a JSON object")
    if provider:
        options["provider"] = provider
    if model:
        options["model"] = model
    if rag:
        options["rag"] = True
    return options or None


# -- chat --------------------------------------------------------------------------------------

UrlOption = Annotated[str, typer.Option(envvar="TOKENRELAY_URL", help="server URL")]
KeyOption = Annotated[
    str | None, typer.Option(envvar="TOKENRELAY_API_KEY", help="API key, when the server has keys")
]
REPL_HELP = (
    "Enter sends · Ctrl-C stops the answer · Ctrl-D or /exit quits · "
    "/new starts a new conversation · /session shows its id · "
    "/retry answers your last message again · /edit TEXT says your last message again as TEXT"
)


@app.command()
def chat(
    message: Annotated[
        str | None, typer.Argument(help="your question; leave it out for an interactive chat")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    session: Annotated[
        str | None, typer.Option(help="continue this conversation (its id is printed)")
    ] = None,
    provider: Annotated[str | None, typer.Option(help="provider for the answers")] = None,
    model: Annotated[str | None, typer.Option(help="model for the answers")] = None,
    rag: Annotated[bool, typer.Option(help="ground answers in your documents")] = False,
    options: Annotated[
        str | None, typer.Option(help="more request options as JSON, e.g. '{\"temperature\": 0}'")
    ] = None,
    plain: Annotated[
        bool, typer.Option(help="print plain text instead of live rendering (default off a TTY)")
    ] = False,
    retry: Annotated[
        bool,
        typer.Option(
            "--retry",
            help="answer the conversation's last message again (with --session, no question);"
            " the earlier answer is kept as a version",
        ),
    ] = False,
    edit: Annotated[
        str | None,
        typer.Option(
            help="with --session: the question replaces this user message (its id from"
            " `sessions show`) and the conversation goes on from there",
        ),
    ] = None,
    api_key: KeyOption = None,
) -> None:
    """Ask one question, or chat interactively when no question is given."""
    opts = _options(provider, model, rag, options)
    live = not plain and out.is_terminal
    if (retry or edit) and session is None:
        raise typer.BadParameter("--retry and --edit need --session: which conversation?")
    if retry and (message is not None or edit):
        raise typer.BadParameter("--retry answers the last message again: give no question")
    if edit and message is None:
        raise typer.BadParameter("--edit needs the message's new text as the question")
    with _handled(url), Client(url, api_key=api_key) as client:
        if retry and session is not None:
            _one_shot(client.stream_regenerate(session, options=opts), live=live)
        elif message is not None and edit and session is not None:
            stream = client.stream_edit(session, edit, message, options=opts)
            _one_shot(stream, live=live)
        elif message is not None:
            stream = client.stream_chat(message, session_id=session, options=opts)
            _one_shot(stream, live=live)
        else:
            _repl(client, session, opts, live=live)


def _one_shot(stream: ChatStream, *, live: bool) -> None:
    view = run_answer(stream, live=live)
    if view.error is not None and view.error.code != "CANCELLED":
        raise view.error
    if view.session_id:
        err.print(f"[dim]session: {view.session_id}[/dim]")
    if view.footer.startswith("stopped"):
        raise typer.Exit(130)


def _repl(client: Client, session: str | None, opts: dict[str, Any] | None, *, live: bool) -> None:
    if session is not None:
        client.session(session)  # a clear SESSION_NOT_FOUND now rather than after a question
    err.print(f"[dim]{REPL_HELP}[/dim]")
    while True:
        try:
            line = out.input("[bold cyan]›[/bold cyan] ") if live else input("› ")
        except KeyboardInterrupt:
            err.print()
            continue
        except EOFError:
            err.print()
            return
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return
        if text == "/help":
            err.print(f"[dim]{REPL_HELP}[/dim]")
            continue
        if text == "/new":
            session = None
            err.print("[dim]new conversation[/dim]")
            continue
        if text == "/session":
            err.print(f"[dim]session: {session or '(new)'}[/dim]")
            continue
        try:
            stream = _repl_stream(client, line, session, opts)
            if stream is None:
                continue
            view = run_answer(stream, live=live)
        except TokenRelayAPIError as exc:  # before the stream: bad input, unknown session, …
            _report(exc)
            continue
        session = view.session_id or session
        if view.error is not None and view.error.code != "CANCELLED":
            _report(view.error)


def _repl_stream(
    client: Client, line: str, session: str | None, opts: dict[str, Any] | None
) -> ChatStream | None:
    """The stream a REPL line asks for: a message, `/retry`, or `/edit TEXT`; None (after
    saying why) when there is nothing to answer again or edit yet."""
    command, _, rest = line.strip().partition(" ")
    if command not in ("/retry", "/edit"):
        return client.stream_chat(line, session_id=session, options=opts)
    if session is None:
        err.print(f"[yellow]{command}[/yellow]: send a message first")
        return None
    if command == "/retry":
        return client.stream_regenerate(session, options=opts)
    if not rest.strip():
        err.print("[yellow]/edit[/yellow]: give the new text, e.g. /edit what about Busan?")
        return None
    last = last_user_message(client.session(session))
    if last is None:
        err.print("[yellow]/edit[/yellow]: send a message first")
        return None
    return client.stream_edit(session, last, rest.strip(), options=opts)


def last_user_message(session: dict[str, Any]) -> str | None:
    """The id of the conversation's last current (not superseded) user message."""
    users = [
        m["id"]
        for m in session.get("messages", [])
        if m["role"] == "user" and not m.get("superseded")
    ]
    return users[-1] if users else None


# -- sessions ----------------------------------------------------------------------------------


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


@sessions_app.command("list")
def sessions_list(
    url: UrlOption = DEFAULT_URL,
    limit: Annotated[int, typer.Option(help="how many, most recent first")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    api_key: KeyOption = None,
) -> None:
    """Your conversations, most recent first."""
    with _handled(url), Client(url, api_key=api_key) as client:
        found = client.sessions(limit=limit)
    if as_json:
        sys.stdout.write(json.dumps(found, ensure_ascii=False, indent=2) + "\n")
        return
    if not found:
        err.print("no conversations yet: start one with `tokenrelay chat`")
        return
    table = Table(box=None, header_style="bold")
    table.add_column("id", no_wrap=True, min_width=32)  # ids are for copying: never cut
    table.add_column("title", overflow="ellipsis", no_wrap=True, max_width=40)
    table.add_column("messages", justify="right")
    table.add_column("updated", no_wrap=True)
    for s in found:
        table.add_row(
            s["id"], escape(s.get("title") or ""), str(s["message_count"]), _when(s["updated_at"])
        )
    out.print(table)


@sessions_app.command("show")
def sessions_show(
    session_id: Annotated[str, typer.Argument(help="the conversation's id")],
    url: UrlOption = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    api_key: KeyOption = None,
) -> None:
    """A conversation's messages."""
    with _handled(url), Client(url, api_key=api_key) as client:
        found = client.session(session_id)
    if as_json:
        sys.stdout.write(json.dumps(found, ensure_ascii=False, indent=2) + "\n")
        return
    out.print(f"[bold]{escape(found.get('title') or session_id)}[/bold] [dim]{session_id}[/dim]")
    for m in found["messages"]:
        role = {"user": "you", "assistant": "assistant"}.get(m["role"], m["role"])
        status = (
            "" if m.get("status") in (None, "complete") else f" [yellow]({m['status']})[/yellow]"
        )
        line = f"[bold]{role}[/bold]{status}: {escape(m['content'])}"
        if m["role"] == "user":  # the id `chat --edit` takes
            line += f" [dim]({m['id']})[/dim]"
        if m.get("superseded"):
            line = f"[dim]earlier version · {line}[/dim]"
        out.print(line)


@sessions_app.command("delete")
def sessions_delete(
    session_id: Annotated[str, typer.Argument(help="the conversation's id")],
    url: UrlOption = DEFAULT_URL,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    api_key: KeyOption = None,
) -> None:
    """Delete a conversation and its messages."""
    if not yes and sys.stdin.isatty():
        typer.confirm(f"delete conversation {session_id}?", abort=True)
    with _handled(url), Client(url, api_key=api_key) as client:
        client.delete_session(session_id)
    err.print(f"deleted {session_id}")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files (.txt .md .html .pdf) and folders")],
    data_dir: Annotated[
        Path | None, typer.Option(help="the server's data dir [TOKENRELAY_DATA_DIR]")
    ] = None,
    owner: Annotated[
        str | None,
        typer.Option(help="the API key's owner id the documents belong to (when keys are on)"),
    ] = None,
    meta: Annotated[
        list[str] | None, typer.Option(help="metadata for every document, key=value; repeatable")
    ] = None,
) -> None:
    """Load documents into the store the server searches (SQLite, or TOKENRELAY_DATABASE_URL).

    With embeddings on (TOKENRELAY_EMBEDDING_PROVIDER), a progress bar shows the chunks
    embedded; a failed embedding call stops with its error, and nothing of that batch is kept.
    """
    # lazy: the document stores only for `ingest`, as the server only for `serve`
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from tokenrelay.config import Settings
    from tokenrelay.errors import TokenRelayError
    from tokenrelay.retrieval.factory import open_document_store
    from tokenrelay.retrieval.hybrid import embedding_progress
    from tokenrelay.retrieval.ingest import ingest_paths
    from tokenrelay.retrieval.owned import scoped_store

    metadata: dict[str, Any] = {}
    for item in meta or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            err.print(f"[red]--meta {item!r}[/red]: expected key=value")
            raise typer.Exit(2)
        metadata[key] = value
    settings = Settings(data_dir=data_dir) if data_dir else Settings()
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
    )
    task = bar.add_task("embedding chunks", total=0, start=False)
    last = 0

    def advance(done: int, total: int) -> None:
        """(done, total) of one stored batch: the bar spans every batch."""
        nonlocal last
        if done == 0:
            if not bar.live.is_started:
                bar.start()
                bar.start_task(task)
            bar.update(task, total=(bar.tasks[0].total or 0) + total)
            last = 0
        bar.advance(task, done - last)
        last = done

    async def run() -> Any:
        store = await open_document_store(settings)
        embedding_progress.set(advance)
        try:
            return await ingest_paths(
                scoped_store(store, owner),
                paths,
                metadata or None,
                chunk_chars=settings.rag_chunk_chars,
                chunk_overlap=settings.rag_chunk_overlap,
            )
        finally:
            await store.close()

    try:
        report = asyncio.run(run())
    except TokenRelayError as e:
        bar.stop()
        err.print(f"[red]ingest failed[/red]: {escape(e.message)}")
        operator = e.details.get("operator") if isinstance(e.details, dict) else None
        if operator or e.suggestion:  # whoever runs `ingest` runs the server: the operator's fix
            err.print(f"fix: {escape(str(operator or e.suggestion))}")
        raise typer.Exit(1) from None
    bar.stop()
    counts = report.counts()
    err.print(
        f"{counts['created']} created, {counts['updated']} updated, "
        f"{counts['unchanged']} unchanged, {counts['skipped']} skipped; "
        f"{report.chunks} chunks, {report.bytes_read / 1e6:.2f} MB"
    )
    for path, reason in report.skipped:
        err.print(f"[yellow]skipped[/yellow] {path}: {reason}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
