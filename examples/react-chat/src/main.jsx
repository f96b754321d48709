import { createRoot } from 'react-dom/client';
import { Chat } from './Chat';
import { Planner } from './Planner';
import { loadMessages } from './tokenrelay';
import './style.css';

// the chat id is the page's (?chat=…): a reload keeps the conversation, and resumes its answer
const url = new URL(location.href);
let chatId = url.searchParams.get('chat');
if (!chatId) {
  chatId = crypto.randomUUID();
  url.searchParams.set('chat', chatId);
  history.replaceState(null, '', url);
}
const initialMessages = await loadMessages(chatId);
createRoot(document.getElementById('root')).render(
  <>
    <Chat chatId={chatId} initialMessages={initialMessages} />
    <Planner />
  </>,
);
