// The AI SDK's default OpenAI provider (`createOpenAI(...)(model)` = the Responses API) against
// tokenrelay: streamText, and generateText with a tool over two steps.
// Usage: node ai_sdk_openai.mjs <base url> [model [stream]] (`stream`: streamText only)
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";

const [url, model = "scripted", only] = process.argv.slice(2);
let scriptedOptions = {};
// tokenrelay's own per-request options (the scripted provider's reply) go in the JSON body
const withOptions = async (input, init) => {
  if (model === "scripted" && init?.body) {
    const body = JSON.parse(init.body);
    body.tokenrelay = { scripted: scriptedOptions };
    init = { ...init, body: JSON.stringify(body) };
  }
  return fetch(input, init);
};
const openai = createOpenAI({ baseURL: `${url}/v1`, apiKey: "unused", fetch: withOptions });

scriptedOptions = { reply: "Streaming works.", tokens: 4 };
const streamed = streamText({ model: openai(model), prompt: "Say something.", maxOutputTokens: 16 });
const parts = [];
for await (const part of streamed.fullStream) parts.push(part.type);
const streamedText = await streamed.text;
const usage = await streamed.usage;
const stream = { text: streamedText, parts, outputTokens: usage.outputTokens ?? null };
if (only === "stream") {
  console.log(JSON.stringify({ stream }));
  process.exit(0);
}

scriptedOptions = {
  tool_calls: [{ name: "weather", arguments: { city: "Seoul" } }],
  reply: "It is sunny in Seoul.",
};
const calls = [];
const generated = await generateText({
  model: openai(model),
  prompt: "What is the weather in Seoul?",
  tools: {
    weather: tool({
      description: "The weather in a city",
      inputSchema: jsonSchema({
        type: "object",
        properties: { city: { type: "string" } },
        required: ["city"],
        additionalProperties: false,
      }),
      execute: async ({ city }) => {
        calls.push(city);
        return { city, weather: "sunny" };
      },
    }),
  },
  stopWhen: stepCountIs(2),
});

console.log(
  JSON.stringify({
    stream,
    generate: {
      text: generated.text,
      steps: generated.steps.length,
      calls,
      finishReason: generated.finishReason,
      modelId: generated.response.modelId,
    },
  }),
);
