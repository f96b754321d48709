import { useEffect } from 'react';
import { useTokenrelayChat } from './useTokenrelayChat.js';

const STORED = 'tokenrelay-stream'; // the answer being read, found again after a reload

export function NativeChat({ base, headers, options }) {
  const chat = useTokenrelayChat({ base, headers, options });
  const busy = chat.status === 'streaming';
  useEffect(() => {
    const streamId = sessionStorage.getItem(STORED);
    if (streamId) chat.resume(streamId); // replayed from its start, then live
  }, []);
  useEffect(() => {
    if (chat.streamId) sessionStorage.setItem(STORED, chat.streamId);
  }, [chat.streamId]);
  return (
    <div data-status={chat.status}>
      {chat.step && <small className="step">{chat.step}</small>}
      {chat.tools.map((call) => (
        <small key={call.callId} className="tool">
          {call.tool}: {call.error ?? (call.result === undefined ? call.message : 'done')}
        </small>
      ))}
      <p className="answer">{chat.text}</p>
      {chat.sources.map((doc) => <cite key={doc.id}>{doc.title}</cite>)}
      {chat.error && chat.status === 'error' && (
        <p role="alert" data-code={chat.error.code}>
          {chat.error.message} {chat.error.suggestion}
          {chat.error.retryable && <button onClick={chat.retry}>Retry</button>}
        </p>
      )}
      <form onSubmit={(event) => {
        event.preventDefault();
        const input = event.currentTarget.elements.q;
        chat.send(input.value);
        input.value = '';
      }}>
        <input name="q" disabled={busy} />
      </form>
      {busy && <button onClick={chat.stop}>Stop</button>}
    </div>
  );
}
