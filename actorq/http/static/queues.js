// The dashboard's queue controls: every queue with its settings and depth, pause / resume,
// purge, and its limits edited in place (PATCH /api/v1/queues/{name}). It uses app.js's
// helpers (api, el, showMessage, hideMessage, $), loaded before it.
"use strict";

const QUEUES_EVERY_MS = 2000;
const LIMIT_FIELDS = ["concurrency", "rate_limit", "max_depth", "retention", "retry"];
const POLICY_NUMBERS = ["base", "factor", "cap", "jitter"];

const queueView = {
  editing: new Set(), // queues whose limit inputs have unsaved edits: not redrawn under them
};

function queuePath(name, suffix = "") {
  return `/queues/${encodeURIComponent(name)}${suffix}`;
}

async function refreshQueues() {
  try {
    const data = await api("GET", "/queues");
    renderQueues(data.queues);
  } catch (err) {
    showMessage($("queues-error"), `queues: ${err}`);
  } finally {
    setTimeout(refreshQueues, QUEUES_EVERY_MS);
  }
}

// A limit as the input shows it: empty for none; a rate limit as N/SECONDS.
function limitText(queue, field) {
  const value = queue[field];
  if (value === null || value === undefined) return "";
  if (field === "rate_limit") return `${value.limit}/${value.period}`;
  if (field === "retry") return policyText(value);
  return String(value);
}

// A retry policy in the short form the CLI takes: "fixed,base=5,factor=2,cap=300,jitter=0".
function policyText(policy) {
  return [policy.backoff, ...POLICY_NUMBERS.map((key) => `${key}=${policy[key]}`)].join(",");
}

// The short form back to the API's JSON; a field left out takes its default on the server.
function parsePolicy(text) {
  const policy = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const [key, value] = part.split("=").map((p) => p.trim());
    if (value === undefined) policy.backoff = key;
    else policy[key] = POLICY_NUMBERS.includes(key) ? Number(value) : value;
  }
  return policy;
}

// The PATCH body for the inputs of one row: empty clears a limit.
function readLimits(row) {
  const body = {};
  for (const field of LIMIT_FIELDS) {
    const raw = row.querySelector(`input[name="${field}"]`).value.trim();
    if (raw === "") {
      body[field] = null;
    } else if (field === "rate_limit") {
      const [limit, period] = raw.split("/");
      body[field] = { limit: Number(limit), period: Number(period) };
    } else if (field === "retry") {
      body[field] = parsePolicy(raw);
    } else {
      body[field] = Number(raw);
    }
  }
  return body;
}

function limitInput(queue, field) {
  const input = el("input", {
    name: field,
    value: limitText(queue, field),
    size: { rate_limit: 7, retry: 18 }[field] || 5,
    placeholder: { rate_limit: "N/s", retry: "fixed,base=5" }[field] || "none",
    title: field.replace("_", " "),
    "data-testid": `queue-${field}`,
  });
  input.addEventListener("input", () => queueView.editing.add(queue.name));
  return el("td", {}, input);
}

function queueButton(text, testid, action) {
  const button = el("button", { type: "button", "data-testid": testid }, text);
  button.addEventListener("click", action);
  return button;
}

function queueRow(queue) {
  const depth = queue.tasks.queued + queue.tasks.scheduled;
  // The saved limits, as the inputs show them: what an edit goes back to.
  const saved = Object.fromEntries(
    LIMIT_FIELDS.map((field) => [`data-saved-${field}`, limitText(queue, field)]),
  );
  const row = el(
    "tr",
    {
      "data-queue": queue.name,
      "data-testid": "queue-row",
      "data-paused": String(queue.paused),
      ...saved,
    },
    el("td", {}, queue.name),
    el("td", { "data-testid": "queue-state" }, queue.paused ? "paused" : "active"),
    el("td", { class: "num", "data-testid": "queue-depth" }, depth),
    el("td", { class: "num" }, queue.tasks.running),
    ...LIMIT_FIELDS.map((field) => limitInput(queue, field)),
  );
  const toggle = queue.paused
    ? queueButton("Resume", "queue-resume", () => queueAction(queue.name, "POST", "/resume"))
    : queueButton("Pause", "queue-pause", () => queueAction(queue.name, "POST", "/pause"));
  const save = queueButton("Save", "queue-save", () =>
    queueAction(queue.name, "PATCH", "", readLimits(row)),
  );
  const purge = queueButton("Purge", "queue-purge", () => purgeQueue(queue.name, depth));
  row.append(el("td", { class: "actions" }, toggle, save, purge));
  return row;
}

function renderQueues(queues) {
  const body = $("queue-controls").tBodies[0];
  const kept = new Map([...body.rows].map((row) => [row.dataset.queue, row]));
  body.replaceChildren(
    ...queues.map((queue) =>
      queueView.editing.has(queue.name) && kept.has(queue.name)
        ? kept.get(queue.name)
        : queueRow(queue),
    ),
  );
}

async function queueAction(name, method, suffix, body) {
  try {
    const json = body === undefined ? undefined : JSON.stringify(body);
    await api(method, queuePath(name, suffix), json);
    queueView.editing.delete(name);
    hideMessage($("queues-error"));
    renderQueues((await api("GET", "/queues")).queues);
  } catch (err) {
    showMessage($("queues-error"), `queue ${name}: ${err}`);
  }
}

async function purgeQueue(name, depth) {
  if (!window.confirm(`Cancel the ${depth} queued and scheduled tasks of ${name}?`)) return;
  try {
    const answer = await api("POST", queuePath(name, "/purge"));
    showMessage($("queues-error"), `queue ${name}: ${answer.purged} tasks purged`, "ok");
    renderQueues((await api("GET", "/queues")).queues);
  } catch (err) {
    showMessage($("queues-error"), `queue ${name}: ${err}`);
  }
}

document.addEventListener("DOMContentLoaded", refreshQueues);
