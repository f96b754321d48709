// useChat's backend (issue #21) read by the AI SDK itself: every stream goes through
// DefaultChatTransport (its uiMessageChunkSchema validates each chunk), readUIMessageStream
// and the Chat class that useChat wraps. Usage: node ui_chat.mjs <base url>
// Prints one JSON object: what each case saw, for tests/test_ui_chat_node.py to check.
import {
  DefaultChatTransport,
  readUIMessageStream,
  validateUIMessages,
} from 'ai';
import { Chat } from '@ai-sdk/react';

const base = process.argv[2];
const api = `${base}/api/ui/chat`;
const transport = new DefaultChatTransport({ api });
const out = {};

const user = (text, id = 'u1') => ({ id, role: 'user', parts: [{ type: 'text', text }] });

async function send(chatId, text, options, extra = {}) {
  return transport.sendMessages({
    chatId,
    messages: [user(text)],
    trigger: 'submit-message',
    messageId: undefined,
    abortSignal: extra.signal,
    body: options ? { options } : undefined,
  });
}

// the message as useChat would hold it at the end, and every chunk seen on the way
async function read(stream) {
  const chunks = [];
  const errors = [];
  const tapped = stream.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        chunks.push(chunk);
        controller.enqueue(chunk);
      },
    }),
  );
  let last;
  for await (const message of readUIMessageStream({
    stream: tapped,
    onError: error => errors.push(String(error.message ?? error)),
  })) {
    last = message;
  }
  return { message: last, types: chunks.map(c => c.type), errors, chunks };
}

const textOf = message =>
  message.parts.filter(p => p.type === 'text').map(p => p.text).join('');

async function loaded(chatId) {
  const response = await fetch(`${api}/${chatId}/messages`);
  const { messages } = await response.json();
  return validateUIMessages({ messages }); // the SDK's own check of our stored chat
}

// the answer's parts as the page showed them live (rebuilt by readUIMessageStream) and as it
// shows them after a reload (from /messages), as JSON: the test checks they are the same
async function shownTwice(chatId, live) {
  const stored = (await loaded(chatId)).at(-1);
  const plain = value => JSON.parse(JSON.stringify(value));
  return { id: stored.id, liveId: live.id, live: plain(live.parts), stored: plain(stored.parts) };
}

// 1. text
{
  const got = await read(
    await send('node-text', '안녕하세요?', { scripted: { reply: '안녕하세요! 반갑습니다.', tokens: 5 } }),
  );
  out.text = {
    text: textOf(got.message),
    id: got.message.id,
    metadata: got.message.metadata,
    types: got.types,
    stored: await loaded('node-text'),
    reloaded: await shownTwice('node-text', got.message),
  };
}

// 2. tools with progress, one failing
{
  const calls = [
    { name: 'steps', arguments: { count: 2 }, id: 'call-s' },
    { name: 'boom', arguments: { reason: 'disk on fire' }, id: 'call-b' },
  ];
  const got = await read(
    await send('node-tools', 'go', { scripted: { tool_calls: calls, reply: 'Done.' } }),
  );
  out.tools = {
    parts: got.message.parts,
    types: got.types,
    stored: await loaded('node-tools'),
    reloaded: await shownTwice('node-tools', got.message),
  };
}

// 2b. a runaway tool loop stopped by the server (max_tool_rounds 1): a status after the tools
{
  const calls = [{ name: 'steps', arguments: { count: 3 } }];
  const got = await read(
    await send('node-status', 'loop', { scripted: { tool_calls: calls, tool_rounds: 3 } }),
  );
  out.status = { reloaded: await shownTwice('node-status', got.message) };
}

// 3. sources
{
  const doc = await fetch(`${base}/api/documents`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      title: 'Palaces',
      text: 'Gyeongbokgung is the main royal palace of the Joseon dynasty in Seoul.',
      source: 'https://example.org/palaces',
    }),
  });
  if (!doc.ok) throw new Error(`ingest failed: ${doc.status} ${await doc.text()}`);
  const got = await read(
    await send('node-rag', 'Which is the main palace?', {
      rag: true,
      scripted: { reply: 'Gyeongbokgung.' },
    }),
  );
  out.sources = {
    parts: got.message.parts.filter(p => p.type.startsWith('source-')),
    stored: await loaded('node-rag'),
    reloaded: await shownTwice('node-rag', got.message),
  };
}

// 4. the planner: its stream (started on the native route) read as UI chunks
{
  const plan = JSON.stringify({
    title: 'Paris',
    days: [
      {
        day: 1,
        date: '2030-06-01',
        title: 'Day 1',
        activities: [{ time: '09:00', name: 'Louvre', description: 'Museum', estimated_cost: 20 }],
      },
    ],
    total_estimated_cost: 20,
    currency: 'EUR',
    notes: '',
  });
  const started = await fetch(`${base}/api/plans/generate/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      location: 'Paris',
      start_date: '2030-06-01',
      end_date: '2030-06-01',
      options: { scripted: { replies: [plan], tokens: 3 } },
    }),
  });
  const native = await started.text();
  const streamId = /"stream_id":"([^"]+)"/.exec(native)[1];
  const planTransport = new DefaultChatTransport({
    api,
    prepareReconnectToStreamRequest: () => ({ api: `${base}/api/ui/streams/${streamId}` }),
  });
  const got = await read(await planTransport.reconnectToStream({ chatId: 'unused' }));
  out.planner = {
    types: got.types,
    data: got.message.parts.filter(p => p.type.startsWith('data-')),
  };
}

// 5. errors: before the stream (an HTTP error the transport throws), and after its start
{
  let before;
  try {
    await send('node-err', 'x', { provider: 'no-such-provider' });
  } catch (error) {
    before = String(error.message);
  }
  const got = await read(
    await send('node-err', 'x', {
      scripted: { reply: 'ab cd ef gh', tokens: 4, error_after: 2 },
    }),
  );
  out.errors = {
    before,
    after: got.errors,
    text: textOf(got.message),
    metadata: got.message.metadata,
    types: got.types,
    reloaded: await shownTwice('node-err', got.message),
  };
}

// 6. abort: the client aborts its fetch (the answer goes on), then Stop ends it
{
  const controller = new AbortController();
  const stream = await send(
    'node-stop',
    'x',
    { scripted: { reply: 'a b c d e f g h', tokens: 8, stall_after: 2 } },
    { signal: controller.signal },
  );
  const reader = stream.getReader();
  let deltas = 0;
  while (deltas < 2) {
    const { value } = await reader.read();
    if (value.type === 'text-delta') deltas += 1;
  }
  controller.abort();
  await reader.cancel().catch(() => {});
  // another tab follows the same answer, then Stop is pressed
  const following = read(await transport.reconnectToStream({ chatId: 'node-stop' }));
  const stopped = await (await fetch(`${api}/node-stop/stop`, { method: 'POST' })).json();
  const got = await following;
  out.abort = {
    stopped,
    types: got.types,
    text: textOf(got.message),
    after: await transport.reconnectToStream({ chatId: 'node-stop' }),
    stored: await loaded('node-stop'),
    reloaded: await shownTwice('node-stop', got.message),
  };
}

// 7. resume: the page reloads mid-answer; a new Chat (useChat's state) loads the stored chat
//    and resumes: the replay replaces the partial answer, nothing lost or twice
{
  const reply = Array.from({ length: 30 }, (_, i) => `w${i}`).join(' ');
  const controller = new AbortController();
  const stream = await send(
    'node-resume',
    'long',
    { scripted: { reply, tokens: 30, delay_ms: 40 } },
    { signal: controller.signal },
  );
  const reader = stream.getReader();
  let deltas = 0;
  while (deltas < 3) {
    const { value } = await reader.read();
    if (value.type === 'text-delta') deltas += 1;
  }
  controller.abort(); // the page goes away
  await reader.cancel().catch(() => {});
  const messages = await loaded('node-resume');
  const chat = new Chat({ id: 'node-resume', messages, transport });
  await chat.resumeStream();
  const assistants = chat.messages.filter(m => m.role === 'assistant');
  out.resume = {
    loadedRoles: messages.map(m => m.role),
    roles: chat.messages.map(m => m.role),
    text: assistants.map(textOf),
    expected: reply,
    status: chat.status,
    again: await transport.reconnectToStream({ chatId: 'node-resume' }),
  };
  // regenerate through the Chat class: the last answer is replaced, not added to
  await chat.regenerate({ body: { options: { scripted: { reply: 'fresh answer' } } } });
  out.regenerate = {
    roles: chat.messages.map(m => m.role),
    text: textOf(chat.messages.at(-1)),
    stored: (await loaded('node-resume')).map(m => m.role),
  };
}

// 8. edit: useChat's sendMessage({ text, messageId }) on an earlier user message, first with
//    the page's own id (it never loaded the chat), then with ours after a reload
{
  const reply = text => ({ body: { options: { scripted: { reply: text } } } });
  const chat = new Chat({ id: 'node-edit', transport });
  await chat.sendMessage({ text: 'first question' }, reply('first answer'));
  await chat.sendMessage({ text: 'second question' }, reply('second answer'));
  const pageId = chat.messages[0].id;
  await chat.sendMessage({ text: 'first question, edited', messageId: pageId }, reply('edited'));
  const live = { texts: chat.messages.map(textOf), status: chat.status, error: chat.error };
  const reloaded = new Chat({ id: 'node-edit', messages: await loaded('node-edit'), transport });
  const ourId = reloaded.messages[0].id;
  await reloaded.sendMessage({ text: 'edited again', messageId: ourId }, reply('again'));
  const history = await (await fetch(`${base}/api/sessions/node-edit`)).json();
  // a messageId the chat does not know: the exact body useChat sends for an edit
  const unknown = await fetch(api, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      id: 'node-edit',
      messages: [user('x', 'not-a-message')],
      trigger: 'submit-message',
      messageId: 'not-a-message',
      options: { locale: 'ko' },
    }),
  });
  out.edit = {
    pageId,
    ourId,
    live,
    reloaded: { texts: reloaded.messages.map(textOf), status: reloaded.status },
    stored: (await loaded('node-edit')).map(textOf),
    history: history.messages.map(m => ({ content: m.content, superseded: !!m.metadata.superseded })),
    unknown: { status: unknown.status, body: await unknown.json() },
  };
}

console.log(JSON.stringify(out));
