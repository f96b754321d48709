"""Structured logs: one JSON object per line on stderr.

Two kinds of lines matter to operators: one per HTTP request (`access_log.py`) and one per
finished stream (`log_stream_finished`). Neither carries message contents unless
`log_content=true`, and no line ever carries an API key: the formatter also scrubs every
configured secret from whatever a line holds, as a last line of defence.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
REDACTED = "[redacted]"
SECRET_QUERY_PARAMS = frozenset({"token", "api_key", "key", "access_token"})
CONTENT_QUERY_PARAMS = frozenset({"message", "q"})
_MIN_SECRET_CHARS = 8  # shorter strings would scrub ordinary words

stream_logger = logging.getLogger("tokenrelay.streams")


def redact_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of every secret replaced."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_query(query: str, *, log_content: bool = False) -> str:
    """A query string safe to log: key-like parameters always hidden, the user's text
    (`message`, `q`) hidden unless `log_content`."""
    if not query:
        return ""
    hidden = SECRET_QUERY_PARAMS if log_content else SECRET_QUERY_PARAMS | CONTENT_QUERY_PARAMS
    pairs = [
        (name, REDACTED if name.lower() in hidden else value)
        for name, value in parse_qsl(query, keep_blank_values=True)
    ]
    return urlencode(pairs, safe="[]")


def redact_content(text: str | None, *, log_content: bool) -> str | dict[str, int] | None:
    """The text itself when `log_content`, otherwise only its length."""
    if text is None or log_content:
        return text
    return {"chars": len(text)}


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if len(s) >= _MIN_SECRET_CHARS)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        line = orjson.dumps(entry, default=str).decode()
        return redact_secrets(line, self.secrets) if self.secrets else line


def configure_logging(level: str = "info", secrets: Iterable[str] = ()) -> None:
    """JSON lines on stderr for the `tokenrelay` loggers; `secrets` (API keys, provider keys,
    see `secrets_of`) are scrubbed from every line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger("tokenrelay")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    logging.Formatter.converter = time.gmtime


def secrets_of(settings: Any) -> list[str]:
    """Every secret in the settings (SecretStr fields, and each API key of `api_keys`)."""
    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            secret = str(value.get_secret_value())
            found.append(secret)
            if name == "api_keys":
                for entry in secret.replace("\n", ",").split(","):
                    found.append(entry.partition(":")[2].strip() or entry.strip())
    return [s for s in found if s]


def log_stream_finished(
    *,
    trace_id: str,
    stream_id: str,
    session_id: str | None,
    owner: str | None,
    provider: str,
    model: str | None,
    outcome: str,
    error_code: str | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    ttft_s: float | None = None,
    duration_s: float,
    message: str | None = None,
    answer: str | None = None,
    log_content: bool = False,
) -> None:
    """One line per finished stream. `outcome`: done, error, cancelled, timeout... The
    message and the answer appear only with `log_content`; otherwise their lengths."""
    if not stream_logger.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {
        "event": "stream_finished",
        "trace_id": trace_id,
        "stream_id": stream_id,
        "session_id": session_id,
        "owner": owner,
        "provider": provider,
        "model": model,
        "outcome": outcome,
        "error_code": error_code,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "ttft_s": round(ttft_s, 6) if ttft_s is not None else None,
        "duration_s": round(duration_s, 6),
    }
    if message is not None:
        fields["user_message"] = redact_content(message, log_content=log_content)
    if answer is not None:
        fields["answer"] = redact_content(answer, log_content=log_content)
    stream_logger.info("stream finished", extra=fields)
