// tokenrelay's chat page: plain JS, no framework, no build step.
//
// Streams with fetch + our SSE parser (POST), renders every wire event (tokens with a cursor,
// sources, tool calls with progress and results, planner progress, errors), resumes a dropped
// connection from the last event id (GET /api/streams/{id} with Last-Event-ID), and stops an
// answer server-side (POST /api/streams/{id}/cancel). The last answer can be regenerated
// (POST /api/sessions/{id}/regenerate) and a message of yours edited
// (POST /api/sessions/{id}/messages/{message_id}/edit): both stream like a new message, and
// the server keeps what they replace as earlier versions (not shown here).
//
// Query parameters, for demos and tests: `?rag=1` turns "Use my documents" on; `?plan=1` the
// trip planner; `?options={...}` (JSON) is merged into every request's `options`, e.g.
// `?options={"provider":"scripted","scripted":{"delay_ms":50}}`.

import { lang, loadCatalogue, t, translatePage } from "./i18n.js";
import { SSEParser } from "./sse.js";

await loadCatalogue();
translatePage();

const MAX_RESUMES = 8;
const NEAR_BOTTOM_PX = 80;

const $ = (id) => document.getElementById(id);
const ui = {
  messages: $("messages"),
  welcome: $("welcome"),
  form: $("composer"),
  input: $("message"),
  send: $("send"),
  stop: $("stop"),
  rag: $("rag"),
  plan: $("plan-mode"),
  planFields: $("plan-fields"),
  planLocation: $("plan-location"),
  planStart: $("plan-start"),
  planEnd: $("plan-end"),
  planBudget: $("plan-budget"),
  error: $("error"),
  sessions: $("sessions"),
  sessionsEmpty: $("sessions-empty"),
  newChat: $("new-chat"),
  sidebar: $("sidebar"),
  toggleSidebar: $("toggle-sidebar"),
  closeSidebar: $("close-sidebar"),
  connection: $("connection"),
};

const params = new URLSearchParams(location.search);
const extraOptions = parseOptions(params.get("options"));
if (params.get("rag") === "1") ui.rag.checked = true;
if (params.get("plan") === "1") ui.plan.checked = true;

const state = {
  sessionId: null,
  current: null, // the answer being streamed (a Turn), or null
  composing: false,
};

function parseOptions(raw) {
  if (!raw) return {};
  try {
    const value = JSON.parse(raw);
    return value && typeof value === "object" && !Array.isArray(value) ? value : {};
  } catch {
    console.warn("ignoring ?options=: not JSON");
    return {};
  }
}

// -- small DOM helpers --------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function nearBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < NEAR_BOTTOM_PX;
}

// Follow the answer while the reader is at the bottom; leave them alone when they scrolled up.
function keepScrolled(wasNearBottom) {
  if (wasNearBottom) ui.messages.scrollTop = ui.messages.scrollHeight;
}

function append(node) {
  const follow = nearBottom();
  ui.welcome.hidden = true;
  ui.messages.append(node);
  keepScrolled(follow);
}

function pretty(value) {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

function showError(target, err) {
  target.replaceChildren(
    el("span", { class: "code", text: err.code || "ERROR" }),
    document.createTextNode(`: ${err.message || t("something went wrong")}`),
    err.suggestion ? el("span", { class: "fix", text: t("Fix: {suggestion}", { suggestion: err.suggestion }) }) : null,
  );
  target.hidden = false;
}

function clearError() {
  ui.error.hidden = true;
  ui.error.replaceChildren();
}

function setConnection(text) {
  ui.connection.textContent = text;
}

// -- one assistant answer on screen --------------------------------------------------------

class Turn {
  constructor() {
    this.root = el("article", { class: "message assistant streaming", "aria-busy": "true" });
    this.root.append(el("span", { class: "sr-only", text: t("Assistant:") }));
    this.status = el("div", { class: "status-line", hidden: "" });
    this.progress = null;
    this.text = el("div", { class: "text" });
    this.tools = null;
    this.toolCards = new Map();
    this.root.append(this.status, this.text);
    this.controller = null;
    this.streamId = null;
    this.lastEventId = null;
    this.lastSeq = 0;
    this.retryMs = 1000;
    this.finished = false;
    this.stopping = false;
    this.dropping = false;
    this.sawTokens = false;
    append(this.root);
  }

  setStatus(message) {
    this.status.textContent = message;
    this.status.hidden = !message;
  }

  addText(content) {
    const follow = nearBottom();
    this.text.append(document.createTextNode(content));
    this.sawTokens = true;
    keepScrolled(follow);
  }

  setProgress(step, message, value) {
    if (!this.progress) {
      const bar = el("progress", { max: "100", value: "0", "aria-label": t("Planner progress") });
      const label = el("div", { class: "progress-label" });
      this.progress = { box: el("div", { class: "progress" }, label, bar), bar, label };
      this.root.insertBefore(this.progress.box, this.text);
    }
    this.progress.bar.value = value;
    this.progress.bar.setAttribute("aria-valuetext", `${Math.round(value)}%: ${message}`);
    this.progress.label.textContent = `${message} (${Math.round(value)}%)`;
    this.progress.box.dataset.step = step;
  }

  addSources(documents) {
    const list = el("ol");
    for (const doc of documents) {
      const item = el("li", { class: "source" }, el("strong", { text: doc.title || doc.id }));
      if (doc.snippet) item.append(el("span", { class: "snippet", text: doc.snippet }));
      list.append(item);
    }
    const box = el(
      "details",
      { class: "sources", open: "" },
      el("summary", { text: t("Sources ({count})", { count: documents.length }) }),
      list,
    );
    this.root.insertBefore(box, this.text);
  }

  toolCard(callId, tool) {
    let card = this.toolCards.get(callId);
    if (card) return card;
    if (!this.tools) {
      this.tools = el("div", { class: "tools", "aria-label": t("Tool calls") });
      this.root.insertBefore(this.tools, this.text);
    }
    const stateLabel = el("span", { class: "tool-state", text: t("running…") });
    const steps = el("ul", { "aria-label": t("Progress") });
    const args = el("code", { class: "tool-args" });
    const head = el(
      "div",
      { class: "tool-head" },
      el("span", { class: "tool-kind", text: t("Tool") }),
      el("code", { class: "tool-name", text: tool }),
      args,
      stateLabel,
    );
    const result = el("pre", { class: "tool-result", "aria-label": t("Result"), hidden: "" });
    const root = el(
      "div",
      { class: "tool", "data-call-id": callId, "data-state": "running" },
      head,
      steps,
      result,
    );
    card = { root, stateLabel, steps, args, result };
    this.toolCards.set(callId, card);
    this.tools.append(root);
    return card;
  }

  toolCall(data) {
    const card = this.toolCard(data.call_id, data.tool);
    card.args.textContent = JSON.stringify(data.args);
  }

  toolProgress(data) {
    const card = this.toolCard(data.call_id, data.tool);
    card.steps.append(el("li", { text: data.message }));
  }

  toolResult(data) {
    const card = this.toolCard(data.call_id, data.tool);
    const failed = data.error != null;
    card.root.dataset.state = failed ? "failed" : "done";
    card.stateLabel.textContent = failed ? t("failed") : t("done");
    card.result.textContent = failed ? t("Error: {error}", { error: data.error }) : pretty(data.result);
    card.result.hidden = false;
  }

  complete(result) {
    // a workflow's streamed text is its raw draft (JSON): fold it away once the result is here
    const raw = this.text.textContent;
    if (raw.trimStart().startsWith("{")) {
      const folded = el("details", { class: "raw" }, el("summary", { text: t("Model output") }));
      folded.append(el("pre", { text: raw }));
      this.text.replaceChildren();
      this.root.insertBefore(folded, this.text);
    }
    const body = Array.isArray(result && result.days) ? planView(result) : el("pre", { text: pretty(result) });
    const box = el("details", { class: "result", open: "" }, el("summary", { text: t("Result") }), body);
    this.root.append(box);
  }

  finish(note, kind = "meta") {
    this.finished = true;
    this.root.classList.remove("streaming");
    this.root.setAttribute("aria-busy", "false");
    this.setStatus("");
    if (note) this.root.append(el("div", { class: kind, text: note }));
  }

  fail(err) {
    const box = el("div", { class: "error", role: "alert" });
    showError(box, err);
    this.root.append(box);
    this.finish("");
  }
}

// A travel plan (the planner's `complete` result), readable rather than raw JSON.
function planView(plan) {
  const box = el("div", { class: "plan" });
  if (plan.title) box.append(el("h3", { text: plan.title }));
  const currency = plan.currency ? ` ${plan.currency}` : "";
  for (const day of plan.days) {
    const heading = t("Day {day} · {date}: {title}", { day: day.day, date: day.date || "", title: day.title || "" });
    box.append(el("strong", { text: heading }));
    const list = el("ul");
    for (const a of day.activities || []) {
      const cost = a.estimated_cost != null ? ` · ${a.estimated_cost}${currency}` : "";
      list.append(el("li", { text: `${a.time || ""} ${a.name}${cost}` }));
    }
    box.append(list);
  }
  if (plan.total_estimated_cost != null) {
    box.append(el("div", { class: "meta", text: t("Estimated total: {cost}", { cost: `${plan.total_estimated_cost}${currency}` }) }));
  }
  if (plan.notes) box.append(el("div", { class: "notice", text: plan.notes }));
  return box;
}

// -- streaming ---------------------------------------------------------------------------

const PLAN_OPTIONS = ["provider", "model", "temperature", "max_tokens", "scripted", "locale"];

function chatOptions() {
  const options = { locale: lang, ...extraOptions };
  if (ui.rag.checked) options.rag = true;
  return options;
}

function chatRequest(message) {
  const body = { message, options: chatOptions() };
  if (state.sessionId) body.session_id = state.sessionId;
  return { url: "/api/chat/stream", body, shown: message };
}

// The planner takes a trip, not a message: the text box holds optional preferences.
function planRequest(preferences) {
  const options = { locale: lang };
  for (const key of PLAN_OPTIONS) if (key in extraOptions) options[key] = extraOptions[key];
  const body = {
    location: ui.planLocation.value.trim(),
    start_date: ui.planStart.value,
    end_date: ui.planEnd.value,
    options,
  };
  if (ui.planBudget.value) body.budget = ui.planBudget.value;
  if (preferences.trim()) body.preferences = preferences.trim();
  const when = `${body.start_date} – ${body.end_date}`;
  const shown = t("Plan a trip to {place}, {when}", { place: body.location, when }) + (body.preferences ? `\n${body.preferences}` : "");
  return { url: "/api/plans/generate/stream", body, shown };
}

function isoDate(daysFromNow) {
  const day = new Date(Date.now() + daysFromNow * 86400000);
  return day.toISOString().slice(0, 10);
}

function syncPlanMode() {
  const on = ui.plan.checked;
  ui.planFields.hidden = !on;
  ui.input.required = !on;
  ui.input.placeholder = on
    ? t("Preferences, e.g. museums and local food (optional)")
    : t("Message (Enter to send, Shift+Enter for a new line)");
  if (on) {
    if (!ui.planStart.value) ui.planStart.value = isoDate(7);
    if (!ui.planEnd.value) ui.planEnd.value = isoDate(9);
    ui.rag.disabled = true;
  } else {
    ui.rag.disabled = false;
  }
}

async function errorOf(response) {
  try {
    const body = await response.json();
    if (body && body.code) return body;
    if (body && body.detail) return { code: `HTTP_${response.status}`, message: String(body.detail) };
  } catch {
    /* not JSON */
  }
  return { code: `HTTP_${response.status}`, message: response.statusText || "request failed" };
}

function handle(turn, sse) {
  const seq = Number(sse.id.slice(sse.id.lastIndexOf(":") + 1));
  if (sse.id) {
    if (Number.isFinite(seq) && seq <= turn.lastSeq) return; // already shown: never repeat
    turn.lastEventId = sse.id;
    if (Number.isFinite(seq)) turn.lastSeq = seq;
  }
  let data;
  try {
    data = JSON.parse(sse.data);
  } catch {
    return;
  }
  const type = data.type || sse.type;
  switch (type) {
    case "metadata":
      turn.streamId = data.stream_id;
      if (data.session_id) state.sessionId = data.session_id;
      if (turn.stopping) cancelOnServer(turn); // Stop was pressed before the stream had an id
      break;
    case "sources":
      turn.addSources(data.documents || []);
      break;
    case "status":
      turn.setStatus(data.message);
      break;
    case "progress":
      turn.setProgress(data.step, data.message, data.progress);
      break;
    case "token":
      turn.setStatus("");
      turn.addText(data.content);
      break;
    case "tool_call":
      turn.toolCall(data);
      break;
    case "tool_progress":
      turn.toolProgress(data);
      break;
    case "tool_result":
      turn.toolResult(data);
      break;
    case "complete":
      turn.complete(data.result);
      break;
    case "done": {
      if (turn.progress) turn.setProgress("done", t("Done"), 100);
      const usage = data.usage || {};
      const reasons = {
        stop: t("finished"),
        length: t("cut at the length limit"),
        tool_calls: t("ended with tool calls"),
      };
      const parts = [reasons[data.finish_reason] || data.finish_reason];
      if (usage.completion_tokens != null) {
        parts.push(t("{count} tokens", { count: usage.completion_tokens }));
      }
      turn.finish(parts.join(", "));
      break;
    }
    case "error":
      if (data.code === "CANCELLED" && turn.stopping) turn.finish(t("Stopped."), "notice");
      else turn.fail(data);
      break;
    default:
      break;
  }
}

// Read one HTTP response's events until it ends; true when the stream reached its end.
async function consume(turn, response) {
  const parser = new SSEParser((sse) => handle(turn, sse), {
    onRetry: (ms) => {
      turn.retryMs = ms;
    },
  });
  const reader = response.body.getReader();
  try {
    while (!turn.finished) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.feed(value);
    }
  } finally {
    parser.end();
    reader.cancel().catch(() => {});
  }
  return turn.finished;
}

function wait(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function run(turn, request) {
  let attempt = 0;
  for (;;) {
    turn.controller = new AbortController();
    turn.dropping = false;
    const seenBefore = turn.lastSeq;
    try {
      let response;
      if (!turn.streamId) {
        response = await fetch(request.url, {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
          body: JSON.stringify(request.body),
          signal: turn.controller.signal,
        });
      } else {
        const headers = { Accept: "text/event-stream" };
        if (turn.lastEventId) headers["Last-Event-ID"] = turn.lastEventId;
        response = await fetch(`/api/streams/${encodeURIComponent(turn.streamId)}`, {
          headers,
          signal: turn.controller.signal,
        });
      }
      if (response.status === 204) {
        // nothing left to resume: the stream ended, or expired on the server
        turn.fail({
          code: "STREAM_NOT_FOUND",
          message: "this answer is no longer available",
          suggestion: "send the message again",
        });
        return;
      }
      if (!response.ok) {
        turn.fail(await errorOf(response));
        return;
      }
      if (attempt > 0) setConnection(t("Reconnected."));
      if (await consume(turn, response)) return;
    } catch (err) {
      if (turn.stopping && !turn.streamId) {
        turn.finish(t("Stopped."), "notice");
        return;
      }
      if (!turn.streamId) {
        turn.fail({
          code: "NETWORK",
          message: `cannot reach the server (${err && err.message ? err.message : err})`,
          suggestion: "check that tokenrelay is running, then send again",
        });
        return;
      }
    }
    if (turn.finished) return;
    if (turn.lastSeq > seenBefore) attempt = 0; // progress was made: a fresh run of retries
    if (!turn.streamId) {
      turn.fail({ code: "INTERNAL_ERROR", message: "the stream closed before it started" });
      return;
    }
    attempt += 1;
    if (attempt > MAX_RESUMES) {
      turn.fail({
        code: "NETWORK",
        message: "the connection keeps dropping",
        suggestion: "check your network, then send the message again",
      });
      return;
    }
    setConnection(t("Connection lost. Reconnecting…"));
    turn.setStatus(t("Reconnecting…"));
    await wait(turn.dropping ? 0 : Math.min(turn.retryMs * attempt, 10000));
  }
}

async function sendMessage(text) {
  if (state.current) return;
  const planning = ui.plan.checked;
  if (!planning && !text.trim()) return;
  if (planning && !ui.planLocation.value.trim()) {
    showError(ui.error, {
      code: "VALIDATION_ERROR",
      message: "the trip needs a destination",
      suggestion: "fill in Destination",
    });
    ui.planLocation.focus();
    return;
  }
  clearError();
  const request = planning ? planRequest(text) : chatRequest(text);
  append(userMessage(request.shown, !planning));
  await runTurn(request, planning);
}

async function runTurn(request, planning = false) {
  const turn = new Turn();
  if (planning) turn.root.classList.add("workflow"); // no session: nothing to regenerate
  state.current = turn;
  setBusy(true);
  try {
    await run(turn, request);
  } finally {
    if (!turn.finished) turn.finish("");
    state.current = null;
    setBusy(false);
    setConnection("");
    refreshActions();
    refreshSessions();
    ui.input.focus();
  }
}

// -- regenerate and edit -----------------------------------------------------------------

// A message of yours, with Edit when it belongs to a conversation (not a trip plan).
function userMessage(text, editable) {
  const kind = editable ? "message user chat" : "message user";
  const node = el("article", { class: kind }, el("div", { class: "text", text }));
  if (editable) {
    const edit = el("button", { type: "button", class: "secondary small edit", text: t("Edit") });
    edit.addEventListener("click", () => startEdit(node));
    node.append(el("div", { class: "actions" }, edit));
  }
  return node;
}

// Regenerate goes on the last answer of a conversation, and only there.
function refreshActions() {
  for (const old of ui.messages.querySelectorAll(".answer-actions")) old.remove();
  const answers = ui.messages.querySelectorAll(".message.assistant");
  const last = answers[answers.length - 1];
  if (!last || !state.sessionId || state.current || last.classList.contains("workflow")) return;
  const again = el("button", { type: "button", class: "secondary small regenerate", text: t("Regenerate") });
  again.addEventListener("click", regenerateAnswer);
  last.append(el("div", { class: "actions answer-actions" }, again));
}

async function regenerateAnswer() {
  if (state.current || !state.sessionId) return;
  clearError();
  const answers = ui.messages.querySelectorAll(".message.assistant");
  if (answers.length) answers[answers.length - 1].remove(); // kept on the server as a version
  const url = `/api/sessions/${encodeURIComponent(state.sessionId)}/regenerate`;
  await runTurn({ url, body: { options: chatOptions() } });
}

function startEdit(node) {
  if (state.current || node.querySelector(".edit-box")) return;
  const text = node.querySelector(".text");
  const box = el("textarea", { class: "edit-box", "aria-label": t("Edit your message"), rows: "3" });
  box.value = text.textContent;
  const save = el("button", { type: "button", class: "small save", text: t("Send") });
  const cancel = el("button", { type: "button", class: "secondary small", text: t("Cancel") });
  const form = el("div", { class: "edit-form" }, box, el("div", { class: "actions" }, save, cancel));
  text.hidden = true;
  node.append(form);
  box.focus();
  const close = () => {
    form.remove();
    text.hidden = false;
  };
  cancel.addEventListener("click", close);
  save.addEventListener("click", () => {
    if (!box.value.trim()) return;
    const edited = box.value;
    close();
    sendEdit(node, edited);
  });
}

// The server names messages by id; the page knows their order. The n-th message of yours on
// screen is the n-th current (not superseded) user message of the session.
async function sendEdit(node, edited) {
  if (state.current || !state.sessionId) return;
  clearError();
  const sessionId = state.sessionId;
  const response = await fetch(`/api/sessions/${encodeURIComponent(sessionId)}`);
  if (!response.ok) {
    showError(ui.error, await errorOf(response));
    return;
  }
  const current = ((await response.json()).messages || []).filter(
    (m) => m.role === "user" && !m.superseded,
  );
  const mine = [...ui.messages.querySelectorAll(".message.user.chat")];
  const target = current[mine.indexOf(node)];
  if (!target) {
    showError(ui.error, {
      code: "VALIDATION_ERROR",
      message: "this message is not in the conversation any more",
      suggestion: "reopen the conversation from the list",
    });
    return;
  }
  // the messages after it stay on the server as an earlier version; here they go
  while (node.nextElementSibling) node.nextElementSibling.remove();
  node.querySelector(".text").textContent = edited;
  const url =
    `/api/sessions/${encodeURIComponent(sessionId)}` +
    `/messages/${encodeURIComponent(target.id)}/edit`;
  await runTurn({ url, body: { message: edited, options: chatOptions() } });
}

// Stopping is explicit: generation outlives the connection (for a reload or a network
// change), so closing the response would not stop it. The stream then ends with `error`
// CANCELLED, which we are still reading.
async function stopAnswer() {
  const turn = state.current;
  if (!turn || turn.stopping) return;
  turn.stopping = true;
  ui.stop.disabled = true;
  // before the first event there is no stream id yet: the `metadata` event cancels it
  if (turn.streamId) await cancelOnServer(turn);
}

async function cancelOnServer(turn) {
  try {
    // the stream then ends with `error` CANCELLED, which we are still reading
    const response = await fetch(`/api/streams/${encodeURIComponent(turn.streamId)}/cancel`, {
      method: "POST",
    });
    if (!response.ok) showError(ui.error, await errorOf(response));
  } catch (err) {
    showError(ui.error, { code: "NETWORK", message: `could not stop: ${err}` });
  }
}

function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.hidden = !busy;
  ui.stop.disabled = false;
  for (const button of ui.messages.querySelectorAll(".message .edit")) button.disabled = busy;
}

// For tests and for trying the resume path by hand: drop the current connection the way a
// network failure would; the page reconnects with Last-Event-ID and finishes the answer.
window.debugDropConnection = () => {
  const turn = state.current;
  if (!turn || !turn.controller) return false;
  turn.dropping = true;
  turn.controller.abort(new DOMException("dropped for debugging", "AbortError"));
  return true;
};
window.tokenrelayState = () => ({
  sessionId: state.sessionId,
  streaming: Boolean(state.current),
  streamId: state.current ? state.current.streamId : null,
  lastEventId: state.current ? state.current.lastEventId : null,
});

// -- sessions ----------------------------------------------------------------------------

async function refreshSessions() {
  let sessions = [];
  try {
    const response = await fetch("/api/sessions?limit=100");
    if (!response.ok) return;
    sessions = (await response.json()).sessions || [];
  } catch {
    return;
  }
  ui.sessions.replaceChildren(
    ...sessions.map((s) => {
      const title = s.title || t("Untitled conversation");
      const open = el("button", { type: "button", class: "open", title, text: title });
      if (s.id === state.sessionId) open.setAttribute("aria-current", "true");
      open.addEventListener("click", () => openSession(s.id));
      const remove = el("button", {
        type: "button",
        class: "delete secondary",
        "aria-label": t("Delete conversation: {title}", { title }),
        text: "✕",
      });
      remove.addEventListener("click", () => deleteSession(s.id));
      return el("li", { "data-session-id": s.id }, open, remove);
    }),
  );
  ui.sessionsEmpty.hidden = sessions.length > 0;
}

function resetConversation() {
  ui.messages.replaceChildren(ui.welcome);
  ui.welcome.hidden = false;
}

async function openSession(id) {
  if (state.current) return;
  clearError();
  const response = await fetch(`/api/sessions/${encodeURIComponent(id)}`);
  if (!response.ok) {
    showError(ui.error, await errorOf(response));
    return;
  }
  const session = await response.json();
  state.sessionId = id;
  resetConversation();
  for (const m of session.messages || []) {
    if (m.superseded) continue; // an earlier version (regenerated or edited)
    if (m.role === "user") {
      append(userMessage(m.content, true));
      continue;
    }
    const text = el("div", { class: "text", text: m.content });
    const node = el("article", { class: `message ${m.role}` }, text);
    if (m.role === "assistant" && m.status && m.status !== "complete") {
      node.append(el("div", { class: "notice", text: `(${m.status})` }));
    }
    if (m.versions && m.versions.length) {
      node.append(el("div", { class: "meta versions", text: `version ${m.versions.length + 1}` }));
    }
    append(node);
  }
  refreshActions();
  closeSidebar();
  refreshSessions();
}

async function deleteSession(id) {
  const response = await fetch(`/api/sessions/${encodeURIComponent(id)}`, { method: "DELETE" });
  if (!response.ok && response.status !== 404) {
    showError(ui.error, await errorOf(response));
    return;
  }
  if (state.sessionId === id && !state.current) {
    state.sessionId = null;
    resetConversation();
  }
  refreshSessions();
}

function closeSidebar() {
  ui.sidebar.classList.remove("open");
  ui.toggleSidebar.setAttribute("aria-expanded", "false");
}

// -- input -------------------------------------------------------------------------------

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.input.value;
  if (state.current || (!text.trim() && !ui.plan.checked)) return;
  ui.input.value = "";
  sendMessage(text);
});

ui.plan.addEventListener("change", syncPlanMode);
syncPlanMode();

// Korean (and any IME) input: the Enter that commits a composition must not send. Chrome sets
// isComposing on that keydown; Safari ends the composition first and reports keyCode 229.
ui.input.addEventListener("compositionstart", () => {
  state.composing = true;
});
ui.input.addEventListener("compositionend", () => {
  state.composing = false;
});
ui.input.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.shiftKey) return;
  if (event.isComposing || state.composing || event.keyCode === 229) return;
  event.preventDefault();
  ui.form.requestSubmit();
});

ui.stop.addEventListener("click", stopAnswer);
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  if (ui.sidebar.classList.contains("open")) closeSidebar();
  else if (state.current) stopAnswer();
});

ui.newChat.addEventListener("click", () => {
  if (state.current) return;
  state.sessionId = null;
  clearError();
  resetConversation();
  closeSidebar();
  refreshSessions();
  ui.input.focus();
});

ui.toggleSidebar.addEventListener("click", () => {
  const open = ui.sidebar.classList.toggle("open");
  ui.toggleSidebar.setAttribute("aria-expanded", String(open));
  if (open) ui.closeSidebar.focus();
});
ui.closeSidebar.addEventListener("click", () => {
  closeSidebar();
  ui.toggleSidebar.focus();
});

refreshSessions();
ui.input.focus();
