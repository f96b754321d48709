// A React hook over tokenrelay's native protocol (docs/protocol.md): one answer at a time,
// with its text, status, tool progress and sources; stop on the server; resume a stream.
import { useCallback, useEffect, useRef, useState } from 'react';
import { stopStream, streamChat, TokenrelayError } from './tokenrelay-stream.js';

/**
 * @typedef {{callId: string, tool: string, args: object, message: string,
 *            result?: any, error?: string}} ToolCall
 * @typedef {{code: string, message: string, suggestion: string, retryable: boolean,
 *            status?: number, retryAfterS?: number | null}} ChatError
 * @typedef {{
 *   status: 'idle' | 'streaming' | 'done' | 'stopped' | 'error',
 *   text: string, step: string, tools: ToolCall[], sources: object[],
 *   error: ChatError | null, sessionId: string | null, streamId: string | null,
 * }} ChatState
 */

/** @type {ChatState} */
const IDLE = {
  status: 'idle', text: '', step: '', tools: [], sources: [],
  error: null, sessionId: null, streamId: null,
};

const updateTool = (state, callId, change) => ({
  ...state,
  tools: state.tools.map((call) => (call.callId === callId ? { ...call, ...change } : call)),
});

/** One protocol event applied to the answer's state (a pure function: test it alone).
 * @param {ChatState} state
 * @returns {ChatState} */
export function applyEvent(state, event) {
  switch (event.type) {
    case 'metadata':
      return { ...state, sessionId: event.session_id, streamId: event.stream_id };
    case 'token':
      return { ...state, text: state.text + event.content };
    case 'status':
    case 'progress':
      return { ...state, step: event.message };
    case 'sources':
      return { ...state, sources: event.documents };
    case 'tool_call':
      return {
        ...state,
        tools: [...state.tools, { callId: event.call_id, tool: event.tool, args: event.args, message: '' }],
      };
    case 'tool_progress':
      return updateTool(state, event.call_id, { message: event.message });
    case 'tool_result':
      return updateTool(state, event.call_id, { result: event.result, error: event.error });
    case 'done':
      return { ...state, status: 'done', step: '' };
    case 'error': // CANCELLED: our own Stop
      return { ...state, status: event.code === 'CANCELLED' ? 'stopped' : 'error', error: event };
    default:
      return state; // `complete` (a workflow's result) and any event added later
  }
}

/**
 * @param {{base?: string, headers?: Record<string, string>, options?: object}} [config]
 *   base: the server ('' = this origin); headers: e.g. Authorization; options: sent with
 *   every message (docs/protocol.md `options`)
 */
export function useTokenrelayChat(config = {}) {
  const [state, setState] = useState(IDLE);
  const settings = useRef(config);
  settings.current = config; // the latest, without re-creating the callbacks
  const live = useRef({ reading: null, sessionId: null, streamId: null, message: '' });

  const read = useCallback(async (request) => {
    const { base = '', headers = {} } = settings.current;
    live.current.reading?.abort(); // one answer at a time on this page
    const reading = new AbortController();
    live.current.reading = reading;
    setState({ ...IDLE, status: 'streaming', sessionId: live.current.sessionId });
    const onEvent = (event) => {
      if (event.type === 'metadata') {
        live.current.sessionId = event.session_id;
        live.current.streamId = event.stream_id;
      }
      setState((state) => applyEvent(state, event));
    };
    try {
      const end = await streamChat({ base, headers, ...request, onEvent, signal: reading.signal });
      if (end === null) setState((state) => ({ ...state, status: 'done' })); // already over
    } catch (error) {
      if (reading.signal.aborted) return; // we stopped reading: not an error
      const failure = error instanceof TokenrelayError
        ? error // the HTTP status and our JSON body: code, message, suggestion, retryable
        : { code: 'NETWORK', message: 'The connection failed.', suggestion: 'Try again.', retryable: true };
      setState((state) => ({ ...state, status: 'error', error: failure }));
    }
  }, []);

  /** Ask; the conversation goes on in the same session. */
  const send = useCallback((message) => {
    live.current.message = message;
    const body = { message, session_id: live.current.sessionId ?? undefined, options: settings.current.options };
    return read({ body });
  }, [read]);

  /** Stop generating on the server: the stream ends with `error` CANCELLED (status 'stopped'). */
  const stop = useCallback(() => {
    const { base = '', headers = {} } = settings.current;
    if (live.current.streamId) return stopStream(live.current.streamId, { base, headers });
  }, []);

  /** Read a stream from its start, e.g. after a reload (store `streamId`) or for another tab. */
  const resume = useCallback((streamId) => read({ streamId }), [read]);

  /** Ask the last question again (after a retryable error). */
  const retry = useCallback(() => send(live.current.message), [send]);

  useEffect(() => () => live.current.reading?.abort(), []); // unmount: stop reading only

  return { ...state, send, stop, resume, retry };
}
