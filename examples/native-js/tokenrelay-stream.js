// tokenrelay's native protocol over fetch: POST /api/chat/stream, read the SSE body with the
// incremental parser of the chat page (./sse.js), and resume a dropped connection with
// GET /api/streams/{id} and Last-Event-ID. No dependencies; any modern browser (or Node 18+).
import { SSEParser } from './sse.js';

/** The server refused before the stream started: its HTTP status and our JSON error body. */
export class TokenrelayError extends Error {
  /**
   * @param {number} status
   * @param {{code?: string, message?: string, suggestion?: string, retryable?: boolean,
   *          stream_id?: string}} body
   * @param {string | null} retryAfter the Retry-After header
   */
  constructor(status, body, retryAfter) {
    super(body.message || `HTTP ${status}`);
    this.name = 'TokenrelayError';
    this.status = status;
    this.code = body.code || 'INTERNAL_ERROR';
    this.suggestion = body.suggestion || '';
    this.retryable = Boolean(body.retryable);
    this.retryAfterS = retryAfter === null ? null : Number(retryAfter);
    this.streamId = body.stream_id || null; // a turn that failed is kept, with its stream
  }
}

/**
 * @typedef {{type: string, [field: string]: any}} TokenrelayEvent one event of docs/protocol.md
 * @typedef {{
 *   base?: string,                    // the server, e.g. 'https://chat.example.com' ('' = this origin)
 *   headers?: Record<string, string>, // e.g. {Authorization: 'Bearer …'}
 *   body?: object,                    // {message, session_id?, options?}: starts a new answer
 *   streamId?: string | null,         // or read this stream …
 *   lastEventId?: string,             // … after this id ('' = from its start)
 *   onEvent?: (event: TokenrelayEvent, id: string) => void,
 *   signal?: AbortSignal,             // abort = stop reading (the answer goes on: see stopStream)
 *   maxResumes?: number,              // reconnections in a row before giving up
 * }} StreamOptions
 */

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Stream one answer; resolves with its terminal event (`done` or `error`), or with null when
 * the stream had already ended (a resume answered 204). Rejects with a TokenrelayError when
 * the server refused before the stream started, or with `signal`'s AbortError.
 * @param {StreamOptions} options
 * @returns {Promise<TokenrelayEvent | null>}
 */
export async function streamChat(options) {
  const { base = '', headers = {}, body, onEvent = () => {}, signal, maxResumes = 5 } = options;
  let streamId = options.streamId ?? null;
  let lastEventId = options.lastEventId ?? '';
  for (let failures = 0; ; ) {
    let terminal = null;
    try {
      const response =
        streamId === null
          ? await fetch(`${base}/api/chat/stream`, {
              method: 'POST',
              headers: { 'Content-Type': 'application/json', ...headers },
              body: JSON.stringify(body),
              signal,
            })
          : await fetch(`${base}/api/streams/${streamId}`, {
              headers: lastEventId ? { ...headers, 'Last-Event-ID': lastEventId } : headers,
              signal,
            });
      if (response.status === 204) return null; // ended, expired, or not yours: nothing to read
      if (!response.ok) {
        const error = await response.json().catch(() => ({}));
        throw new TokenrelayError(response.status, error, response.headers.get('Retry-After'));
      }
      const parser = new SSEParser((frame) => {
        const event = JSON.parse(frame.data);
        lastEventId = frame.id;
        if (event.type === 'metadata') streamId = event.stream_id;
        if (event.type === 'done' || event.type === 'error') terminal = event;
        failures = 0; // progress: the next drop may be resumed again
        onEvent(event, frame.id);
      });
      const reader = response.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
      }
      parser.end();
    } catch (error) {
      if (error instanceof TokenrelayError || signal?.aborted) throw error;
      // the connection dropped (or never came up): resume below, if we know the stream
    }
    if (terminal) return terminal;
    if (streamId === null || ++failures > maxResumes) {
      throw new Error('the connection to tokenrelay failed before the stream started');
    }
    await sleep(250 * 2 ** (failures - 1)); // then GET /api/streams/{id} with Last-Event-ID
  }
}

/** Stop an answer on the server (closing the connection does not): its stream ends with
 * `error` CANCELLED, and the partial answer stays in the session. */
export async function stopStream(streamId, { base = '', headers = {} } = {}) {
  await fetch(`${base}/api/streams/${streamId}/cancel`, { method: 'POST', headers });
}
