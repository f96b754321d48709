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

// the travel planner's request options: ?plan_options=<JSON> (e.g. the scripted provider's)
const planOptions = JSON.parse(params.get('plan_options') ?? '{}');

// start a plan on the native route; resolves with its stream id, read from the stream's first
// event (`metadata`). The plan goes on without this connection: read it with planTransport
export async function startPlan(trip) {
  const reading = new AbortController();
  const response = await fetch(`${TOKENRELAY}/api/plans/generate/stream`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ ...trip, options: planOptions }),
    signal: reading.signal,
  });
  if (!response.ok) throw new Error(`planning failed: ${response.status} ${await response.text()}`);
  const events = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let received = '';
  while (!received.includes('\n\n')) {
    const { value, done } = await events.read();
    if (done) throw new Error('the plan stream ended before its first event');
    received += value;
  }
  reading.abort(); // only the first event is read here
  const data = received.split('\n').find(line => line.startsWith('data:'));
  return JSON.parse(data.slice(5)).stream_id;
}

// any stream of ours from its start as UI message chunks: useChat({ id: streamId, resume: true })
export const planTransport = new DefaultChatTransport({
  prepareReconnectToStreamRequest: ({ id }) => ({ api: `${TOKENRELAY}/api/ui/streams/${id}` }),
});
