// The dashboard's nodes panel: every node of the cluster (live, and gone within the hour),
// what it runs, and pause / resume / drain (POST /api/v1/nodes/{id}/...). An order reaches
// the node wherever it runs. It uses app.js's helpers (api, el, showMessage, hideMessage,
// formatTime, showTask, $), loaded before it.
"use strict";

const NODES_EVERY_MS = 2000;

function nodePath(id, suffix = "") {
  return `/nodes/${encodeURIComponent(id)}${suffix}`;
}

async function refreshNodes() {
  try {
    renderNodes((await api("GET", "/nodes")).nodes);
  } catch (err) {
    showMessage($("nodes-error"), `nodes: ${err}`);
  } finally {
    setTimeout(refreshNodes, NODES_EVERY_MS);
  }
}

// live, paused, draining or gone: what an operator needs to read first.
function nodeState(node) {
  if (node.status === "gone") return "gone";
  if (node.draining) return "draining";
  return node.paused ? "paused" : "live";
}

function nodeButton(node, text, command) {
  const button = el("button", { type: "button", "data-action": command }, text);
  button.addEventListener("click", () => nodeCommand(node.id, command));
  return button;
}

function runningCell(node) {
  const links = node.running.map((taskId) => {
    const link = el("button", { type: "button", class: "link", title: taskId }, taskId.slice(0, 8));
    link.addEventListener("click", () => showTask(taskId));
    return link;
  });
  return el("td", { "data-testid": "node-running" }, ...links);
}

function nodeRow(node) {
  const state = nodeState(node);
  const actions = el("td", { class: "actions" });
  if (node.status === "live" && !node.draining) {
    actions.append(
      node.paused ? nodeButton(node, "Resume", "resume") : nodeButton(node, "Pause", "pause"),
      nodeButton(node, "Drain", "drain"),
    );
  }
  return el(
    "tr",
    { "data-testid": "node-row", "data-node": node.id, "data-state": state },
    el("td", {}, node.id),
    el("td", { "data-testid": "node-state" }, state),
    el("td", {}, `${node.host} · ${node.pid}`),
    el("td", {}, node.version),
    el("td", { class: "num" }, node.concurrency),
    el("td", {}, node.queues === null ? "all" : node.queues.join(", ")),
    runningCell(node),
    el("td", {}, formatTime(node.last_heartbeat)),
    actions,
  );
}

function renderNodes(nodes) {
  $("nodes-table").tBodies[0].replaceChildren(...nodes.map(nodeRow));
}

async function nodeCommand(id, command) {
  const question = {
    drain: `Drain ${id}? It takes no new work and its process stops once its running tasks finish.`,
  }[command];
  if (question && !window.confirm(question)) return;
  try {
    await api("POST", nodePath(id, `/${command}`));
    hideMessage($("nodes-error"));
    renderNodes((await api("GET", "/nodes")).nodes);
  } catch (err) {
    showMessage($("nodes-error"), `node ${id}: ${err}`);
  }
}

document.addEventListener("DOMContentLoaded", refreshNodes);
