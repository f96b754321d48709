"""The floor: a bare ``asyncio.start_server`` HTTP/1.1 server writing pre-encoded chunked SSE.

No framework, no per-event JSON encoding: every token frame is encoded once at start-up. It
paces exactly like the other servers (``await asyncio.sleep(delay)`` before each token, which
yields to the loop even when the delay is 0), so it shows what the event loop and the kernel
cost on this machine. Run: ``python -m bench.relay.baselines.floor --port 8000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid

from bench.relay.baselines.common import (
    MAX_TOKENS,
    Script,
    done_event,
    metadata_event,
    parse_script,
    token_event,
)

_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n"
    b"connection: close\r\n\r\n"
)
_END = b"0\r\n\r\n"
_chunks: list[bytes] = []


def _chunk(frame: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(frame), frame)


def _frame(event: str, data: object) -> bytes:
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event}\ndata: {payload}\n\n".encode()


def _token_chunk(i: int) -> bytes:
    while len(_chunks) <= i:
        _chunks.append(_chunk(_frame("token", token_event(len(_chunks)))))
    return _chunks[i]


async def _read_request(reader: asyncio.StreamReader) -> Script | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b"{}"
    return parse_script(json.loads(body))


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        script = await _read_request(reader)
        if script is None:
            return
        stream_id = uuid.uuid4().hex
        writer.write(_HEAD + _chunk(_frame("metadata", metadata_event(stream_id))))
        transport = writer.transport
        for i in range(script.tokens):
            if script.stall_after is not None and i >= script.stall_after:
                await reader.read()  # until the client leaves
                return
            await asyncio.sleep(script.delay_s)
            if transport.is_closing():
                return
            writer.write(_token_chunk(i))
            await writer.drain()
        writer.write(_chunk(_frame("done", done_event(stream_id, script.tokens))) + _END)
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _serve(host: str, port: int) -> None:
    _token_chunk(min(MAX_TOKENS, 1000) - 1)
    server = await asyncio.start_server(_handle, host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop  # type: ignore[import-not-found, unused-ignore]

        uvloop.run(_serve(args.host, args.port))
    else:
        asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
