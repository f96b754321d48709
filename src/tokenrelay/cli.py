"""The `tokenrelay` command: serve, chat, sessions, ingest."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from tokenrelay.client import DEFAULT_URL, Client, TokenRelayAPIError

app = typer.Typer(
    help="tokenrelay: stream LLM answers over Server-Sent Events.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)


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
    from tokenrelay.config import Settings
    from tokenrelay.logs import configure_logging
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
    configure_logging(settings.log_level)
    err.print(
        f"tokenrelay on http://{settings.host}:{settings.port} "
        f"(provider {settings.provider}, data in {settings.data_dir})"
    )
    run(settings)


@app.command()
def chat(
    message: Annotated[str, typer.Argument(help="your question")],
    url: Annotated[str, typer.Option(envvar="TOKENRELAY_URL", help="server URL")] = DEFAULT_URL,
    session: Annotated[
        str | None, typer.Option(help="continue this session id (printed after each answer)")
    ] = None,
    provider: Annotated[str | None, typer.Option(help="provider for this answer")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="TOKENRELAY_API_KEY")] = None,
) -> None:
    """Ask one question and print the answer as it streams."""
    options = {"provider": provider} if provider else None
    session_id = session
    try:
        with Client(url, api_key=api_key) as client:
            for event in client.stream_chat(message, session_id=session_id, options=options):
                if event.type == "token":
                    sys.stdout.write(event.content)
                    sys.stdout.flush()
                elif event.type == "metadata":
                    session_id = event.session_id
                elif event.type == "error":
                    sys.stdout.write("\n")
                    raise TokenRelayAPIError.from_event(event)
        sys.stdout.write("\n")
        err.print(f"[dim]session: {session_id}[/dim]")
    except TokenRelayAPIError as exc:
        err.print(f"[red]{exc.code}[/red]: {exc.message}")
        if exc.suggestion:
            err.print(f"[yellow]fix:[/yellow] {exc.suggestion}")
        raise typer.Exit(1) from exc
    except httpx.TransportError as exc:
        err.print(f"[red]cannot reach {url}[/red]: {exc}")
        err.print("[yellow]fix:[/yellow] start the server with `tokenrelay serve` or pass --url")
        raise typer.Exit(2) from exc


def main() -> None:
    app()


if __name__ == "__main__":
    main()
