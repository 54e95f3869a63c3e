// The dashboard's audit trail: the journal's latest seal (seq and hash) and whether the last
// `actorq journal verify` passed, from GET /api/v1/journal/head. Uses app.js's helpers.
"use strict";

const AUDIT_EVERY_MS = 5000;

async function refreshAudit() {
  try {
    renderAudit(await api("GET", "/journal/head"));
  } catch (err) {
    $("audit-seal").textContent = "?";
    $("audit-seal").title = `journal head: ${err}`;
  } finally {
    setTimeout(refreshAudit, AUDIT_EVERY_MS);
  }
}

function renderAudit(head) {
  const seal = $("audit-seal");
  if (head.seal) {
    const hash = head.seal.hash;
    seal.textContent = `${head.seal.seq} · ${hash.slice(hash.indexOf(":") + 1, hash.indexOf(":") + 13)}`;
    seal.title = `${hash}\nsealed ${head.seal.at} by ${head.seal.node}` +
      `${head.seal.keyed ? " (keyed)" : ""}; ${head.unsealed} seqs past it`;
  } else {
    seal.textContent = "none";
    seal.title = `${head.unsealed} seqs not sealed yet`;
  }
  const verify = $("audit-verify");
  const last = head.verification;
  verify.dataset.state = last === null ? "never" : last.ok ? "passed" : "failed";
  if (last === null) {
    verify.textContent = "never run";
    verify.title = "run `actorq journal verify`";
  } else {
    verify.textContent = last.ok ? "passed" : `failed at seq ${last.problem?.seq ?? "?"}`;
    verify.title = `${last.at}${last.problem ? `: ${last.problem.message}` : ""}`;
  }
}

document.addEventListener("DOMContentLoaded", refreshAudit);
