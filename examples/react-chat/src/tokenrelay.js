import { DefaultChatTransport } from 'ai';

const params = new URLSearchParams(location.search);
// where tokenrelay is: ?server=<url>, else this page's origin (`npm run dev` proxies /api)
const TOKENRELAY = params.get('server') ?? '';
// our request options, sent with every message: ?options=<JSON> (e.g. the scripted provider's)
const options = JSON.parse(params.get('options') ?? '{}');

// POST /api/ui/chat; resume: GET /api/ui/chat/{id}/stream (derived by the AI SDK)
export const transport = new DefaultChatTransport({
  api: `${TOKENRELAY}/api/ui/chat`,
  body: { options },
});

// the stored chat, as useChat's initial `messages` (none for a chat that does not exist yet)
export async function loadMessages(chatId) {
  const response = await fetch(`${TOKENRELAY}/api/ui/chat/${chatId}/messages`);
  if (!response.ok) throw new Error(`loading chat ${chatId} failed: ${response.status}`);
  return (await response.json()).messages;
}

// useChat's stop() only drops the connection, and the answer goes on (it can be resumed);
// this stops it on the server, which keeps the partial answer in the session
export async function stopAnswer(chatId) {
  await fetch(`${TOKENRELAY}/api/ui/chat/${chatId}/stop`, { method: 'POST' });
}
