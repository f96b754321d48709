// An incremental Server-Sent Events parser, following the HTML spec's "event stream
// interpretation": bytes may arrive split anywhere (inside a line, inside a UTF-8 character,
// between the \r and \n of a CRLF); lines end in \n, \r or \r\n; ":" lines are comments;
// several data lines are joined with \n; `id` is remembered across events (never reset by an
// event without one); `retry` reports a reconnection delay; a frame without data is no event.

export class SSEParser {
  /**
   * @param {(event: {type: string, data: string, id: string}) => void} onEvent
   * @param {{onRetry?: (ms: number) => void, onComment?: (text: string) => void}} [hooks]
   */
  constructor(onEvent, hooks = {}) {
    this.onEvent = onEvent;
    this.onRetry = hooks.onRetry || (() => {});
    this.onComment = hooks.onComment || (() => {});
    this.decoder = new TextDecoder("utf-8");
    this.buffer = "";
    this.afterCR = false; // the last chunk ended in \r: a \n starting the next one belongs to it
    this.firstLine = true;
    this.data = [];
    this.type = "";
    this.lastEventId = "";
  }

  /** Feed raw bytes (Uint8Array) or already-decoded text. */
  feed(chunk) {
    const text =
      typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    if (!text) return;
    let start = 0;
    let i = 0;
    if (this.afterCR && text[0] === "\n") {
      start = i = 1;
    }
    this.afterCR = false;
    for (; i < text.length; i++) {
      const c = text[i];
      if (c === "\r" || c === "\n") {
        this.#line(this.buffer + text.slice(start, i));
        this.buffer = "";
        if (c === "\r") {
          if (i + 1 === text.length) this.afterCR = true;
          else if (text[i + 1] === "\n") i++;
        }
        start = i + 1;
      }
    }
    this.buffer += text.slice(start);
  }

  /** The stream ended: an unterminated last event is dropped, as the spec says. */
  end() {
    this.buffer = "";
    this.data = [];
    this.type = "";
  }

  #line(line) {
    if (this.firstLine) {
      this.firstLine = false;
      if (line.charCodeAt(0) === 0xfeff) line = line.slice(1);
    }
    if (line === "") {
      this.#dispatch();
      return;
    }
    if (line[0] === ":") {
      this.onComment(line.slice(1).trimStart());
      return;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    switch (field) {
      case "data":
        this.data.push(value);
        break;
      case "event":
        this.type = value;
        break;
      case "id":
        if (!value.includes("\0")) this.lastEventId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.onRetry(Number(value));
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  #dispatch() {
    if (this.data.length === 0) {
      this.type = "";
      return;
    }
    const event = {
      type: this.type || "message",
      data: this.data.join("\n"),
      id: this.lastEventId,
    };
    this.data = [];
    this.type = "";
    this.onEvent(event);
  }
}
