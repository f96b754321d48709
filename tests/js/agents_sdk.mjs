// The OpenAI Agents SDK (JS) against tokenrelay: an agent with a function tool, on a streamed
// run over the Responses API. Usage: node agents_sdk.mjs <base url> [model] [tool choice]
// (a model other than `scripted` is asked greedily: temperature 0)
import {
  Agent,
  run,
  setDefaultOpenAIClient,
  setOpenAIAPI,
  setTracingDisabled,
  tool,
} from "@openai/agents";
import OpenAI from "openai";

const [url, model = "scripted", toolChoice] = process.argv.slice(2);
const scripted = {
  tool_calls: [{ name: "get_weather", arguments: { city: "Seoul" } }],
  reply: "The weather in Seoul is sunny.",
};
const withOptions = async (input, init) => {
  if (model === "scripted" && init?.body) {
    const body = JSON.parse(init.body);
    body.tokenrelay = { scripted };
    init = { ...init, body: JSON.stringify(body) };
  }
  return fetch(input, init);
};
setDefaultOpenAIClient(
  new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0, fetch: withOptions }),
);
setOpenAIAPI("responses");
setTracingDisabled(true);

const calls = [];
const getWeather = tool({
  name: "get_weather",
  description: "The weather in a city",
  parameters: {
    type: "object",
    properties: { city: { type: "string" } },
    required: ["city"],
    additionalProperties: false,
  },
  strict: true,
  execute: async ({ city }) => {
    calls.push(city);
    return `sunny in ${city}`;
  },
});
const agent = new Agent({
  name: "Weather",
  instructions: "Use the tool to answer.",
  model,
  modelSettings: model === "scripted" ? {} : { temperature: 0, ...(toolChoice ? { toolChoice } : {}) },
  tools: [getWeather],
});

const result = await run(agent, "What is the weather in Seoul?", { stream: true });
const events = [];
const items = [];
let text = "";
for await (const event of result) {
  events.push(event.type);
  if (event.type === "raw_model_stream_event" && event.data.type === "output_text_delta") {
    text += event.data.delta;
  }
  if (event.type === "run_item_stream_event") items.push(event.item.type);
}
await result.completed;

console.log(
  JSON.stringify({
    finalOutput: result.finalOutput,
    calls,
    text,
    items,
    eventTypes: [...new Set(events)],
  }),
);
