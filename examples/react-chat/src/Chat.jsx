import { useChat } from '@ai-sdk/react';
import { useState } from 'react';
import { stopAnswer, transport } from './tokenrelay';

// render <Chat> once loadMessages(chatId) has resolved: `messages` is read at mount
export function Chat({ chatId, initialMessages }) {
  const { messages, sendMessage, status, stop, regenerate } = useChat({
    id: chatId, // your own id: the session is created, owned by your API key
    messages: initialMessages,
    transport,
    resume: true, // on mount: GET /api/ui/chat/{chatId}/stream (204: nothing to resume)
  });
  const busy = status === 'submitted' || status === 'streaming';
  const [editing, setEditing] = useState(null); // the user message being edited: { id, text }
  return (
    <div data-status={status}>
      {messages.map(message => (
        <div key={message.id} className={message.role} data-id={message.id}>
          {message.parts.map((part, i) => {
            if (part.type === 'text') return <p key={i}>{part.text}</p>;
            if (part.type === 'data-tool-progress') return <small key={i}>{part.data.message}</small>;
            if (part.type === 'source-url') return <a key={i} href={part.url}>{part.title}</a>;
            if (part.type === 'source-document') return <cite key={i}>{part.title}</cite>;
            if (part.type === 'data-status') return <small key={i}>{part.data.message}</small>;
            if (part.type === 'data-progress') return <progress key={i} max={100} value={part.data.progress} />;
            if (part.type.startsWith('tool-')) return <code key={i}>{part.type.slice(5)}: {part.state}</code>;
            return null;
          })}
          {message.role === 'user' && !busy && (
            <button onClick={() => setEditing({ id: message.id, text: message.parts[0].text })}>
              Edit
            </button>
          )}
        </div>
      ))}
      <form onSubmit={event => {
        event.preventDefault();
        const input = event.currentTarget.elements.q;
        // with a messageId: that message is edited, the chat cut back to it and answered anew
        sendMessage({ text: input.value, messageId: editing?.id });
        setEditing(null);
        input.value = '';
      }}>
        <input name="q" key={editing?.id} defaultValue={editing?.text} disabled={busy} />
      </form>
      {busy && <button onClick={() => { stop(); stopAnswer(chatId); }}>Stop</button>}
      {!busy && messages.length > 0 && <button onClick={() => regenerate()}>Regenerate</button>}
    </div>
  );
}
