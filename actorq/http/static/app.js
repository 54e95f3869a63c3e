// The actorq dashboard: statistics, the schedules, the live event feed, the tasks table, one
// task's detail and history, and a submit form, all from the node's own REST API. Other panels live in
// files of their own (dead_letters.js) and hear the live feed through ``onEventHooks``.
//
// Everything the API returns is put on the page as text (textContent and DOM nodes), never
// as markup: payloads, queue names and errors are whatever a client sent.
"use strict";

const API = "/api/v1";
const STATES = ["scheduled", "queued", "claimed", "running", "succeeded", "dead", "cancelled"];
const LIVE_STATES = new Set(["scheduled", "queued", "claimed", "running"]);
const RETRYABLE_STATES = new Set(["dead", "cancelled"]);
// The server names each SSE message after its event kind; EventSource only hands over the
// kinds it listens for. Keep in step with actorq.model.EventKind (a test checks).
const EVENT_KINDS = [
  "submitted", "enqueued", "claimed", "started", "succeeded", "failed", "timed_out",
  "lease_expired", "released", "cancelled", "dead_lettered", "retried", "snoozed",
  "purged", "expired", "progress",
];
// A purged or expired task left the live projection: the API answers 404 with these codes,
// and its history is still there to show.
const GONE = { task_purged: "purged", task_expired: "expired" };
const FEED_SIZE = 100;
const PAGE_SIZE = 25;
const STATS_EVERY_MS = 2000;
const SCHEDULES_EVERY_MS = 2000;
const TASKS_EVERY_MS = 5000;
const REFRESH_DEBOUNCE_MS = 250;

const $ = (id) => document.getElementById(id);

// -- talking to the API ---------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  toString() {
    const status = this.status ? `${this.status} ` : "";
    return `${status}${this.code}: ${this.message}`;
  }
}

// -- the API token: asked for once (on the first 401), kept for the browser session -------
//
// sessionStorage: the token lives as long as the tab and is not sent anywhere but in our own
// Authorization header. The live feed cannot send headers (EventSource), so it opens with a
// single-use ticket bought with the token (see connectFeed).
const TOKEN_KEY = "actorq.token";
const auth = { asking: null };

function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// One prompt for all the requests that were refused at once; resolves when a token is given.
function askForToken(message) {
  if (!auth.asking) {
    const form = $("token-form");
    $("token-message").textContent = message;
    form.hidden = false;
    $("token-input").focus();
    auth.asking = new Promise((resolve) => {
      form.addEventListener("submit", function given(ev) {
        ev.preventDefault();
        const token = $("token-input").value.trim();
        if (!token) return;
        form.removeEventListener("submit", given);
        sessionStorage.setItem(TOKEN_KEY, token);
        $("token-input").value = "";
        form.hidden = true;
        auth.asking = null;
        resolve(token);
        connectFeed();
      });
    });
  }
  return auth.asking;
}

async function api(method, path, body) {
  for (;;) {
    const resp = await send(method, path, body);
    if (resp.status !== 401) return answer(resp);
    sessionStorage.removeItem(TOKEN_KEY);
    const refused = await answer(resp).catch((err) => err);
    await askForToken(`${refused.message}. Paste an API token (actorq token create NAME --scope read|operate).`);
  }
}

async function send(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  const token = storedToken();
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = body;
  }
  try {
    return await fetch(API + path, init);
  } catch (err) {
    throw new ApiError(0, "network_error", `the server cannot be reached (${err.message})`);
  }
}

async function answer(resp) {
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const error = data && data.error;
    if (error && typeof error.code === "string") {
      throw new ApiError(resp.status, error.code, String(error.message));
    }
    throw new ApiError(resp.status, `http_${resp.status}`, text || resp.statusText);
  }
  return data;
}

// -- small DOM helpers ----------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("data-") || name === "title" || name === "tabindex") {
      node.setAttribute(name, value);
    } else node[name] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function showMessage(node, text, kind = "error") {
  node.textContent = text;
  node.dataset.kind = kind;
  node.hidden = false;
}

function hideMessage(node) {
  node.textContent = "";
  node.hidden = true;
}

function badge(state) {
  return el("span", { class: `badge state-${state}`, "data-field": "state" }, state);
}

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

// The API sends every time as ISO 8601 UTC with microseconds (2026-11-27T02:20:52.000000Z);
// Date is only specified to parse milliseconds, so the extra digits are cut before parsing.
function toDate(value) {
  if (typeof value === "number") return new Date(value * 1000);
  return new Date(String(value).replace(/(\.\d{3})\d+/, "$1"));
}

// Local time, to the millisecond; the exact UTC value is in the element's title.
function formatTime(value) {
  if (value === null || value === undefined) return "";
  const date = toDate(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  return `${day} ${clock}.${pad(date.getMilliseconds(), 3)}`;
}

function timeCell(value) {
  const iso = typeof value === "number" ? toDate(value).toISOString() : value;
  return el("td", { title: iso ?? "" }, formatTime(value));
}

function formatSeconds(value) {
  if (value === null || value === undefined) return "–";
  return value < 1 ? `${(value * 1000).toFixed(1)} ms` : `${value.toFixed(2)} s`;
}

function formatJson(value) {
  return JSON.stringify(value, null, 2);
}

function debounce(fn, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

// -- statistics -----------------------------------------------------------------------------

async function refreshStats() {
  try {
    const stats = await api("GET", "/stats");
    hideMessage($("stats-error"));
    renderStats(stats);
  } catch (err) {
    showMessage($("stats-error"), `statistics: ${err}`);
  } finally {
    setTimeout(refreshStats, STATS_EVERY_MS);
  }
}

function renderStats(stats) {
  $("node-name").textContent = stats.node;
  for (const state of STATES) $(`count-${state}`).textContent = stats.tasks[state] ?? 0;
  $("stat-throughput").textContent = stats.finished_per_second_60s.toFixed(2);
  const p = stats.pickup_seconds;
  $("stat-pickup").textContent = [p.p50, p.p95, p.p99].map(formatSeconds).join(" / ");
  $("stat-last-seq").textContent = stats.last_seq;
  $("stat-scope").textContent = `${stats.scope} · ${Math.round(stats.uptime_seconds)} s`;

  const rows = Object.keys(stats.queues).sort().map((queue) =>
    el(
      "tr",
      { "data-queue": queue },
      el("td", {}, queue),
      ...STATES.map((state) => el("td", { class: "num" }, stats.queues[queue][state] ?? 0)),
    ),
  );
  $("queues-table").tBodies[0].replaceChildren(...rows);
  renderWaiting(stats.waiting_for_handler ?? {});
}

// Queued tasks of types no live node serves: shown only while there are some.
function renderWaiting(waiting) {
  const types = Object.keys(waiting).sort();
  $("waiting").hidden = types.length === 0;
  $("waiting-table").tBodies[0].replaceChildren(
    ...types.map((type) =>
      el("tr", { "data-type": type }, el("td", {}, type), el("td", { class: "num" }, waiting[type])),
    ),
  );
}

// -- the tasks table ------------------------------------------------------------------------

const table = {
  cursors: [null], // cursor of each page seen so far; the last is the page shown
  shown: new Set(), // ids of the tasks on the page shown
  nextCursor: null,
  filters: null, // the filters the cursors belong to, as JSON
  generation: 0, // answers to a request older than the newest are dropped
};

function currentFilters() {
  return {
    state: $("filter-state").value,
    queue: $("filter-queue").value.trim(),
    type: $("filter-type").value.trim(),
  };
}

async function refreshTasks() {
  const generation = ++table.generation;
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  for (const [name, value] of Object.entries(currentFilters())) {
    if (value) query.set(name, value);
  }
  const cursor = table.cursors[table.cursors.length - 1];
  if (cursor) query.set("cursor", cursor);
  try {
    const page = await api("GET", `/tasks?${query}`);
    if (generation !== table.generation) return;
    hideMessage($("tasks-error"));
    renderTasks(page);
  } catch (err) {
    if (generation === table.generation) showMessage($("tasks-error"), `tasks: ${err}`);
  }
}

function renderTasks(page) {
  table.shown = new Set(page.tasks.map((t) => t.id));
  table.nextCursor = page.next_cursor;
  const rows = page.tasks.map((t) => {
    const row = el(
      "tr",
      { "data-task-id": t.id, "data-testid": "task-row", tabindex: "0", title: "show this task" },
      el("td", { title: t.id }, el("code", {}, t.id.slice(0, 8))),
      el("td", {}, t.type),
      el("td", {}, t.queue),
      el("td", {}, badge(t.state)),
      el("td", { class: "num" }, `${t.attempt}/${t.max_attempts}`),
      el("td", { class: "num" }, t.priority),
      timeCell(t.created_at),
    );
    if (t.id === detail.taskId) row.classList.add("selected");
    return row;
  });
  $("tasks-table").tBodies[0].replaceChildren(...rows);
  $("tasks-empty").hidden = rows.length > 0;
  $("tasks-next").disabled = !page.next_cursor;
  $("tasks-first").disabled = table.cursors.length === 1;
  $("tasks-page").textContent = `page ${table.cursors.length}`;
}

function firstPage() {
  table.cursors = [null];
  table.filters = JSON.stringify(currentFilters());
  refreshTasks();
}

// Back to the first page when the filters differ from the ones the pages were walked with
// (typing is debounced, so this may run after an Enter or a click on "Next page" already did).
function filtersChanged() {
  if (JSON.stringify(currentFilters()) !== table.filters) firstPage();
}

const refreshTasksSoon = debounce(refreshTasks, REFRESH_DEBOUNCE_MS);

// Would this event change what the table shows?
function concernsTable(item) {
  if (table.shown.has(item.task_id)) return true;
  const f = currentFilters();
  return (
    (!f.state || f.state === item.state) &&
    (!f.queue || f.queue === item.queue) &&
    (!f.type || f.type === item.type)
  );
}

function setUpTasksTable() {
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    firstPage();
  });
  $("filter-state").addEventListener("change", filtersChanged);
  const typed = debounce(filtersChanged, 400);
  $("filter-queue").addEventListener("input", typed);
  $("filter-type").addEventListener("input", typed);
  $("tasks-next").addEventListener("click", () => {
    if (!table.nextCursor) return;
    table.cursors.push(table.nextCursor);
    refreshTasks();
  });
  $("tasks-first").addEventListener("click", firstPage);
  const body = $("tasks-table").tBodies[0];
  const open = (ev) => {
    const row = ev.target.closest("tr[data-task-id]");
    if (row) showTask(row.dataset.taskId);
  };
  body.addEventListener("click", open);
  body.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") open(ev);
  });
  setInterval(refreshTasks, TASKS_EVERY_MS);
}

// -- one task: detail and history -----------------------------------------------------------

const detail = { taskId: null, generation: 0 };

const TASK_FIELDS = [
  ["type", "type"], ["queue", "queue"], ["attempt", "attempt"],
  ["max_attempts", "max attempts"], ["priority", "priority"], ["timeout", "timeout (s)"],
  ["worker", "worker"], ["idempotency_key", "idempotency key"],
  ["scheduled_at", "scheduled at"], ["created_at", "created"], ["started_at", "started"],
  ["finished_at", "finished"], ["updated_at", "updated"], ["lease_expires_at", "lease until"],
];

async function showTask(taskId) {
  const generation = ++detail.generation; // answers for a task no longer shown are dropped
  const switching = detail.taskId !== taskId;
  detail.taskId = taskId;
  for (const row of $("tasks-table").tBodies[0].rows) {
    row.classList.toggle("selected", row.dataset.taskId === taskId);
  }
  $("detail").hidden = false;
  if (switching) {
    hideMessage($("detail-error"));
    $("detail-id").textContent = taskId;
  }
  const path = `/tasks/${encodeURIComponent(taskId)}`;
  const [task, history] = await Promise.allSettled([
    api("GET", path),
    api("GET", `${path}/history`),
  ]);
  if (generation !== detail.generation) return;
  if (history.status === "fulfilled") renderHistory(history.value.events);
  if (task.status === "fulfilled") {
    renderTask(task.value);
  } else if (history.status === "fulfilled" && GONE[task.reason.code]) {
    renderGone(taskId, GONE[task.reason.code], task.reason);
  } else {
    showMessage($("detail-error"), String(task.status === "rejected" ? task.reason : history.reason));
  }
}

// A task no longer in the live projection: only its history is left to show.
function renderGone(taskId, why, err) {
  $("detail-id").textContent = taskId;
  $("detail-state").replaceChildren(badge(why));
  $("detail").dataset.state = why;
  $("detail-fields").replaceChildren();
  $("detail-payload").textContent = "";
  $("detail-result-box").hidden = true;
  $("detail-failure-box").hidden = true;
  $("task-cancel").hidden = true;
  $("task-retry").hidden = true;
  showMessage($("detail-error"), err.message, "info");
}

function renderTask(task) {
  $("detail-id").textContent = task.id;
  $("detail-state").replaceChildren(badge(task.state));
  $("detail").dataset.state = task.state;
  const fields = [];
  for (const [key, label] of TASK_FIELDS) {
    const value = task[key];
    if (value === null || value === undefined) continue;
    const shown = key.endsWith("_at") ? formatTime(value) : String(value);
    fields.push(el("dt", {}, label), el("dd", { "data-field": key, title: String(value) }, shown));
  }
  if (task.retry) {
    const text = describeRetry(task.retry);
    fields.push(el("dt", {}, "retry"), el("dd", { "data-field": "retry", title: JSON.stringify(task.retry) }, text));
  }
  if (Object.keys(task.metadata).length) {
    fields.push(el("dt", {}, "metadata"), el("dd", {}, JSON.stringify(task.metadata)));
  }
  if (task.progress) fields.push(el("dt", {}, "progress"), progressBar(task.progress));
  $("detail-fields").replaceChildren(...fields);
  $("detail-payload").textContent = formatJson(task.payload);
  $("detail-result-box").hidden = task.state !== "succeeded";
  $("detail-result").textContent = formatJson(task.result);
  $("detail-failure-box").hidden = !task.error;
  $("detail-failure").textContent = task.error ?? "";
  $("task-cancel").hidden = !LIVE_STATES.has(task.state);
  $("task-retry").hidden = !RETRYABLE_STATES.has(task.state);
}

// The last progress its handler reported: a bar, the percentage and its message.
function progressBar(progress) {
  const percent = `${Math.round(progress.fraction * 100)}%`;
  const text = progress.message ? `${percent} · ${progress.message}` : percent;
  return el(
    "dd",
    { "data-field": "progress", title: formatTime(progress.at) },
    el("progress", { value: String(progress.fraction), max: "1", "data-testid": "detail-progress" }),
    " ",
    el("span", { "data-testid": "detail-progress-text" }, text),
  );
}

// A retry policy in words: "linear · base 2 s · cap 60 s · jitter 0.1" (factor only where it
// counts, for exponential backoff; cap not for fixed).
function describeRetry(policy) {
  const parts = [policy.backoff, `base ${policy.base} s`];
  if (policy.backoff === "exponential") parts.push(`factor ${policy.factor}`);
  if (policy.backoff !== "fixed") parts.push(`cap ${policy.cap} s`);
  parts.push(`jitter ${policy.jitter}`);
  return parts.join(" · ");
}

function renderHistory(events) {
  const rows = events.map((e) => {
    const { error, ...rest } = e.data;
    const data = Object.keys(rest).length ? JSON.stringify(rest) : "";
    return el(
      "tr",
      { "data-kind": e.kind, "data-testid": "history-row" },
      el("td", { class: "num" }, e.seq),
      timeCell(e.at),
      el("td", {}, e.kind),
      el("td", {}, e.node),
      el("td", {}, e.worker ?? ""),
      el("td", { "data-testid": "history-actor" }, e.actor ?? ""),
      el("td", { class: "error-text" }, error ?? ""),
      el("td", { class: "data", title: data }, data),
    );
  });
  $("history-table").tBodies[0].replaceChildren(...rows);
}

async function actOnTask(method, suffix) {
  const taskId = detail.taskId;
  if (!taskId) return;
  hideMessage($("detail-error"));
  try {
    const task = await api(method, `/tasks/${encodeURIComponent(taskId)}${suffix}`);
    if (detail.taskId === taskId) renderTask(task);
    showTask(taskId);
    refreshTasksSoon();
  } catch (err) {
    if (detail.taskId === taskId) showMessage($("detail-error"), String(err));
  }
}

const refreshDetailSoon = debounce(() => {
  if (detail.taskId) showTask(detail.taskId);
}, REFRESH_DEBOUNCE_MS);

function setUpDetail() {
  $("task-cancel").addEventListener("click", () => actOnTask("DELETE", ""));
  $("task-retry").addEventListener("click", () => actOnTask("POST", "/retry"));
  $("task-close").addEventListener("click", () => {
    detail.taskId = null;
    detail.generation++;
    $("detail").hidden = true;
    for (const row of $("tasks-table").tBodies[0].rows) row.classList.remove("selected");
  });
}

// -- the live feed --------------------------------------------------------------------------

// lastId: the id (journal seq) of the last event shown. EventSource sends it back by itself
// when it reconnects; a stream we open again (after the server ended it) asks for
// ``?since=`` it, so events committed meanwhile are shown too, none missed.
const feed = { source: null, retryMs: 1000, retryTimer: null, lastId: null };

function setConnection(state) {
  const node = $("conn");
  node.dataset.state = state;
  node.textContent = state;
}

async function connectFeed() {
  clearTimeout(feed.retryTimer);
  if (feed.source) feed.source.close();
  const query = new URLSearchParams();
  if (feed.lastId !== null) query.set("since", feed.lastId); // resume where the feed was
  if (storedToken()) {
    // A ticket, not the token: a URL lands in logs, a ticket is worth one use for 30 s.
    try {
      const { ticket } = await api("POST", "/events/ticket");
      query.set("ticket", ticket);
    } catch {
      setConnection("reconnecting");
      reconnectLater();
      return;
    }
  }
  const search = query.toString();
  const source = new EventSource(`${API}/events${search ? `?${search}` : ""}`);
  feed.source = source;
  source.addEventListener("open", () => {
    setConnection("live");
    feed.retryMs = 1000;
  });
  source.addEventListener("error", () => {
    setConnection("reconnecting");
    // EventSource retries by itself while CONNECTING; once CLOSED it is up to us.
    if (source.readyState === EventSource.CLOSED) reconnectLater();
  });
  for (const kind of EVENT_KINDS) {
    source.addEventListener(kind, (msg) => {
      if (msg.lastEventId) feed.lastId = msg.lastEventId;
      onEvent(JSON.parse(msg.data));
    });
  }
  source.addEventListener("lagged", (msg) => {
    // The server dropped us for falling behind. It names the seq to resume from: connect
    // again from there. Without one, events were lost: reload what they would have updated.
    setConnection("reconnecting");
    source.close();
    const resume = JSON.parse(msg.data).seq;
    if (resume !== undefined && resume !== null) {
      feed.lastId = String(resume);
    } else {
      refreshTasksSoon();
      refreshDetailSoon();
    }
    reconnectLater();
  });
}

function reconnectLater() {
  if (feed.source) feed.source.close();
  clearTimeout(feed.retryTimer);
  feed.retryTimer = setTimeout(connectFeed, feed.retryMs);
  feed.retryMs = Math.min(feed.retryMs * 2, 30000);
}

// Other panels' listeners to the live feed (each takes one event item).
const onEventHooks = [];

function onEvent(item) {
  addToFeed(item);
  for (const hook of onEventHooks) hook(item);
  if (concernsTable(item)) refreshTasksSoon();
  if (item.task_id === detail.taskId) refreshDetailSoon();
}

function addToFeed(item) {
  const link = el("button", { type: "button", class: "link", title: item.task_id }, item.task_id.slice(0, 8));
  link.addEventListener("click", () => showTask(item.task_id));
  const where = [item.queue, item.type].filter((x) => x !== null && x !== undefined).join(" · ");
  const who = item.worker ?? item.node;
  const entry = el(
    "li",
    { "data-testid": "feed-item", "data-kind": item.kind, "data-task-id": item.task_id },
    el("span", { class: "time", title: item.at }, formatTime(item.at).slice(11)),
    el("span", { class: `kind kind-${item.kind}` }, item.kind),
    link,
    badge(item.state),
    el("span", { class: "muted" }, where),
    el("span", { class: "muted" }, who),
  );
  const list = $("feed");
  list.prepend(entry);
  while (list.children.length > FEED_SIZE) list.lastElementChild.remove();
}

// -- submitting -----------------------------------------------------------------------------

async function loadTypes() {
  const names = $("type-names");
  try {
    const { types } = await api("GET", "/types");
    const select = $("submit-type");
    select.replaceChildren(
      ...types.map((t) =>
        el("option", { value: t.name, title: `queue ${t.queue}, ${t.max_attempts} attempts` }, t.name),
      ),
    );
    names.replaceChildren(...types.map((t) => el("option", { value: t.name })));
  } catch {
    // A node without the types route: any name may be typed, the server says if it is unknown.
    const input = el("input", { id: "submit-type", required: true, autocomplete: "off" });
    input.setAttribute("list", "type-names");
    $("submit-type").replaceWith(input);
  }
}

// The submission the form describes; throws a message for what the browser can tell is wrong.
function readSubmission() {
  const body = { type: $("submit-type").value.trim() };
  if (!body.type) throw new Error("choose a task type");
  const raw = $("submit-payload").value.trim();
  if (raw) {
    try {
      body.payload = JSON.parse(raw);
    } catch (err) {
      throw new Error(`payload is not valid JSON: ${err.message}`);
    }
  }
  const queue = $("submit-queue").value.trim();
  if (queue) body.queue = queue;
  // Numbers go as typed; the server judges their range and says what is wrong.
  for (const [id, field] of [
    ["submit-priority", "priority"],
    ["submit-max-attempts", "max_attempts"],
    ["submit-delay", "delay"],
  ]) {
    const text = $(id).value.trim();
    if (!text) continue;
    const value = Number(text);
    if (!Number.isFinite(value)) throw new Error(`${field} must be a number`);
    body[field] = value;
  }
  const retry = readRetry();
  if (retry) body.retry = retry;
  return body;
}

// The retry policy of the form: nothing when no field of it is set (the task then takes its
// queue's, its type's or the node's); fields left empty take the built-in policy's.
function readRetry() {
  const retry = {};
  const backoff = $("submit-retry-backoff").value;
  if (backoff) retry.backoff = backoff;
  for (const field of ["base", "factor", "cap", "jitter"]) {
    const text = $(`submit-retry-${field}`).value.trim();
    if (!text) continue;
    const value = Number(text);
    if (!Number.isFinite(value)) throw new Error(`retry ${field} must be a number`);
    retry[field] = value;
  }
  return Object.keys(retry).length ? retry : null;
}

async function submitTask(ev) {
  ev.preventDefault();
  const message = $("submit-message");
  let body;
  try {
    body = readSubmission();
  } catch (err) {
    showMessage(message, err.message);
    return;
  }
  const button = $("submit-button");
  button.disabled = true;
  try {
    const task = await api("POST", "/tasks", JSON.stringify(body));
    showMessage(message, `submitted ${task.id} (${task.state})`, "ok");
    message.dataset.taskId = task.id;
    refreshTasksSoon();
    showTask(task.id);
  } catch (err) {
    showMessage(message, String(err));
  } finally {
    button.disabled = false;
  }
}

// -- schedules ------------------------------------------------------------------------------

async function refreshSchedules() {
  try {
    const data = await api("GET", "/schedules");
    hideMessage($("schedules-error"));
    renderSchedules(data.schedules);
  } catch (err) {
    showMessage($("schedules-error"), `cannot read the schedules: ${err}`);
  } finally {
    setTimeout(refreshSchedules, SCHEDULES_EVERY_MS);
  }
}

function scheduleWhen(schedule) {
  if (schedule.every !== null) return `every ${schedule.every} s`;
  return `${schedule.cron} (${schedule.timezone})`;
}

function renderSchedules(schedules) {
  const rows = schedules.map((s) => {
    const toggle = el("button", { type: "button", "data-action": s.paused ? "resume" : "pause" },
      s.paused ? "Resume" : "Pause");
    toggle.addEventListener("click", () => actOnSchedule(s.name, "POST", s.paused ? "/resume" : "/pause"));
    const remove = el("button", { type: "button", "data-action": "delete" }, "Delete");
    remove.addEventListener("click", () => {
      if (window.confirm(`Delete schedule ${s.name}? Its history stays in the journal.`)) {
        actOnSchedule(s.name, "DELETE", "");
      }
    });
    const next = s.paused ? el("td", { "data-field": "next" }, "paused") : timeCell(s.next_run_at);
    next.dataset.field = "next";
    return el("tr", { "data-testid": "schedule-row", "data-name": s.name, "data-paused": String(s.paused) },
      el("td", {}, s.name),
      el("td", {}, scheduleWhen(s)),
      el("td", {}, `${s.task.type} → ${s.task.queue}`),
      next,
      timeCell(s.last_run_at),
      el("td", { "data-field": "fired" }, s.fired),
      el("td", {}, s.misfire),
      el("td", { class: "actions" }, toggle, " ", remove));
  });
  $("schedules-table").tBodies[0].replaceChildren(...rows);
  $("schedules-empty").hidden = schedules.length > 0;
}

async function actOnSchedule(name, method, suffix) {
  hideMessage($("schedules-error"));
  try {
    await api(method, `/schedules/${encodeURIComponent(name)}${suffix}`);
    const data = await api("GET", "/schedules");
    renderSchedules(data.schedules);
  } catch (err) {
    showMessage($("schedules-error"), `${name}: ${err}`);
  }
}

// -- start ----------------------------------------------------------------------------------

function start() {
  setUpTasksTable();
  setUpDetail();
  $("submit-form").addEventListener("submit", submitTask);
  loadTypes();
  connectFeed();
  refreshStats();
  refreshSchedules();
  firstPage();
}

document.addEventListener("DOMContentLoaded", start);
