// The dashboard's dead letters: the dead tasks with their last error, retry or purge one, or
// all of those matching the queue and type filters. Uses app.js's helpers (api, el, $...),
// which is loaded first.
"use strict";

const DEAD_PAGE_SIZE = 25;
const DEAD_EVERY_MS = 5000;
// Events after which the dead letters shown may have changed.
const DEAD_KINDS = new Set(["dead_lettered", "retried", "purged", "expired"]);

const dead = { cursors: [null], nextCursor: null, generation: 0 };

function deadFilters() {
  const filters = {};
  const queue = $("dead-queue").value.trim();
  const type = $("dead-type").value.trim();
  if (queue) filters.queue = queue;
  if (type) filters.type = type;
  return filters;
}

async function refreshDead() {
  const generation = ++dead.generation;
  const query = new URLSearchParams({ limit: String(DEAD_PAGE_SIZE), ...deadFilters() });
  const cursor = dead.cursors[dead.cursors.length - 1];
  if (cursor) query.set("cursor", cursor);
  try {
    const page = await api("GET", `/dead-letters?${query}`);
    if (generation === dead.generation) renderDead(page);
  } catch (err) {
    if (generation === dead.generation) showMessage($("dead-message"), `dead letters: ${err}`);
  }
}

function deadButton(label, action, taskId) {
  return el("button", { type: "button", "data-action": action, "data-task-id": taskId }, label);
}

function renderDead(page) {
  dead.nextCursor = page.next_cursor;
  const rows = page.dead_letters.map((t) =>
    el(
      "tr",
      { "data-task-id": t.id, "data-testid": "dead-row", title: "show this task" },
      el("td", { title: t.id }, el("code", {}, t.id.slice(0, 8))),
      el("td", {}, t.type),
      el("td", {}, t.queue),
      el("td", { class: "num" }, `${t.attempt}/${t.max_attempts}`),
      el("td", { class: "error-text", "data-field": "error", title: t.error ?? "" }, t.error ?? ""),
      timeCell(t.finished_at),
      el("td", {}, deadButton("Retry", "retry", t.id), deadButton("Purge", "purge", t.id)),
    ),
  );
  $("dead-table").tBodies[0].replaceChildren(...rows);
  $("dead-empty").hidden = rows.length > 0;
  $("dead-count").textContent = rows.length && !page.next_cursor && dead.cursors.length === 1
    ? `(${rows.length})`
    : "";
  $("dead-next").disabled = !page.next_cursor;
  $("dead-first").disabled = dead.cursors.length === 1;
}

// Retry or purge: one task (ids), or every dead letter the filters select.
async function settleDead(action, selection, what) {
  const message = $("dead-message");
  hideMessage(message);
  try {
    const answer = await api("POST", `/dead-letters/${action}`, JSON.stringify(selection));
    const n = action === "retry" ? answer.retried : answer.purged;
    showMessage(message, `${action === "retry" ? "retried" : "purged"} ${n} ${what}`, "ok");
    message.dataset.count = String(n);
  } catch (err) {
    showMessage(message, `${action}: ${err}`);
  }
  dead.cursors = [null];
  refreshDead();
  refreshTasksSoon();
}

function setUpDeadLetters() {
  $("dead-filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    dead.cursors = [null];
    refreshDead();
  });
  $("dead-retry-all").addEventListener("click", () =>
    settleDead("retry", deadFilters(), "dead letter(s)"),
  );
  $("dead-purge-all").addEventListener("click", () => {
    const filters = deadFilters();
    const which = Object.keys(filters).length ? "the dead letters matching the filters" : "every dead letter";
    // Purging is not undone by a click: ask first.
    if (window.confirm(`Purge ${which}? Their history stays readable.`)) {
      settleDead("purge", filters, "dead letter(s)");
    }
  });
  $("dead-next").addEventListener("click", () => {
    if (!dead.nextCursor) return;
    dead.cursors.push(dead.nextCursor);
    refreshDead();
  });
  $("dead-first").addEventListener("click", () => {
    dead.cursors = [null];
    refreshDead();
  });
  $("dead-table").tBodies[0].addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (button) {
      settleDead(button.dataset.action, { ids: [button.dataset.taskId] }, "task");
      return;
    }
    const row = ev.target.closest("tr[data-task-id]");
    if (row) showTask(row.dataset.taskId);
  });
  const soon = debounce(refreshDead, REFRESH_DEBOUNCE_MS);
  onEventHooks.push((item) => {
    if (DEAD_KINDS.has(item.kind)) soon();
  });
  setInterval(refreshDead, DEAD_EVERY_MS);
  refreshDead();
}

document.addEventListener("DOMContentLoaded", setUpDeadLetters);
