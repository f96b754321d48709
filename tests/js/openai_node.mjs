// openai-node against tokenrelay: the Responses API (create, stream), chat completions with
// `stop`, and the SDK's error classes. Usage: node openai_node.mjs <base url> [model [stream]]
// (`stream`: the streamed response only, e.g. for the slow local model)
import OpenAI from "openai";

const [url, model = "scripted", only] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
const scripted = (options) => (model === "scripted" ? { tokenrelay: { scripted: options } } : {});

async function streamed() {
  const stream = client.responses.stream({
    model,
    instructions: "Answer in one short sentence.",
    input: [{ role: "user", content: [{ type: "input_text", text: "What is the sky's color?" }] }],
    max_output_tokens: 16,
    ...scripted({ reply: "It is blue.", tokens: 3 }),
  });
  const types = [];
  let deltas = "";
  for await (const event of stream) {
    types.push(event.type);
    if (event.type === "response.output_text.delta") deltas += event.delta;
  }
  const final = await stream.finalResponse();
  return { types, deltas, text: final.output_text, status: final.status, model: final.model };
}

if (only === "stream") {
  console.log(JSON.stringify({ stream: await streamed() }));
  process.exit(0);
}

const created = await client.responses.create({
  model,
  input: "Say hello.",
  max_output_tokens: 16,
  ...scripted({ reply: "Hello from tokenrelay." }),
});

const stream = await streamed();

const completion = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "count" }],
  stop: ["three"],
  ...scripted({ reply: "one two three four" }),
});

const errors = {};
for (const [name, call] of Object.entries({
  notFound: () => client.responses.create({ model: "gpt-nonexistent", input: "x" }),
  badRequest: () => client.responses.create({ model, input: "x", tools: [{ type: "web_search" }] }),
})) {
  try {
    await call();
    errors[name] = null;
  } catch (e) {
    errors[name] = { cls: e.constructor.name, status: e.status, code: e.code ?? null };
  }
}

console.log(
  JSON.stringify({
    created: { id: created.id, text: created.output_text, model: created.model },
    stream,
    stop: completion.choices[0].message.content,
    errors,
  }),
);
