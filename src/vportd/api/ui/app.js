// vportd dashboard: reads GET /v1/events (server-sent events) with the bearer token and
// renders each snapshot. Plain JavaScript, no dependencies. The token stays in
// sessionStorage (this tab only) and is sent in the Authorization header, never in a URL.
"use strict";

const TOKEN_KEY = "vportd.token";
const RETRY_MS = 2000;
const OPEN_STATES = new Set(["preparing", "ready", "activated"]);
let latest = null;
let stream = null; // the AbortController of the running read, if any

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function row(cells, attrs) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.appendChild(cell instanceof Node ? cell : el("td", cell));
  for (const [k, v] of Object.entries(attrs || {})) tr.setAttribute(k, v);
  return tr;
}

function fill(table, rows, empty) {
  const body = $(table).tBodies[0];
  body.replaceChildren(...rows);
  if (!rows.length) {
    const tr = row([el("td", empty)], { class: "empty" });
    tr.firstChild.colSpan = $(table).tHead.rows[0].cells.length;
    body.appendChild(tr);
  }
}

function setStatus(text, cls) {
  const s = $("status");
  s.textContent = text;
  s.className = "status " + (cls || "");
}

// -- signing in and out -------------------------------------------------------------------
function showBoard(signedIn) {
  $("login").hidden = signedIn;
  $("board").hidden = !signedIn;
  $("logout").hidden = !signedIn;
}

function signIn(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  $("login-error").hidden = true;
  start();
}

function signOut(message) {
  if (stream) stream.abort();
  stream = null;
  sessionStorage.removeItem(TOKEN_KEY);
  showBoard(false);
  setStatus("signed out");
  if (message) {
    $("login-error").textContent = message;
    $("login-error").hidden = false;
  }
}

// -- the stream ---------------------------------------------------------------------------
function start() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return showBoard(false);
  showBoard(true);
  if (stream) stream.abort();
  stream = new AbortController();
  follow(token, stream.signal);
}

async function follow(token, signal) {
  while (!signal.aborted) {
    setStatus("connecting", "");
    try {
      const answer = await fetch("/v1/events", {
        headers: { Authorization: "Bearer " + token, Accept: "text/event-stream" },
        cache: "no-store",
        signal,
      });
      if (answer.status === 401 || answer.status === 403) {
        const body = await answer.json().catch(() => ({}));
        return signOut("Refused: " + (body.detail || answer.status));
      }
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      setStatus("live", "live");
      await readEvents(answer.body, signal);
    } catch (err) {
      if (signal.aborted) return;
      console.warn("event stream:", err);
    }
    setStatus("reconnecting", "down");
    await new Promise((done) => setTimeout(done, RETRY_MS));
  }
}

async function readEvents(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      onFrame(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
    }
  }
}

function onFrame(frame) {
  let event = "message";
  const data = [];
  for (const line of frame.split("\n")) {
    if (line.startsWith(":")) continue; // a heartbeat
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    if (field === "data") data.push(value);
  }
  if (event === "snapshot" && data.length) {
    latest = JSON.parse(data.join("\n"));
    render(latest);
  }
}

// -- rendering ----------------------------------------------------------------------------
function render(snap) {
  $("controller").textContent = "controller " + snap.controller;
  renderCluster(snap);
  renderMigrations(snap.migrations);
  renderVports(snap.vports);
}

function yes(flag) {
  return el("td", flag ? "yes" : "no", flag ? "ok" : "bad");
}

function renderCluster(snap) {
  const cluster = snap.cluster;
  const detail = snap.health.detail || {};
  $("leader").textContent = cluster.leader || "none";
  $("session").textContent = cluster.session ? "yes" : "no (stale since " + cluster.stale_since + ")";
  $("health").textContent = snap.health.ok ? "ok" : "unhealthy";
  $("health").className = snap.health.ok ? "ok" : "bad";
  $("loop-lag").textContent = detail.loop_stall_max_s === undefined ? "-" : detail.loop_stall_max_s + " s";
  $("vport-count").textContent = detail.vports === undefined ? "-" : detail.vports;
  fill("members", cluster.members.map((m) => row([
    el("td", m.id + (m.id === cluster.leader ? " (leader)" : "")),
    el("td", m.api, "mono"), yes(m.healthy), el("td", m.switch_names.join(", ")),
  ], { "data-member": m.id })), "no members");
  fill("switches", snap.switches.map((s) => row([
    el("td", s.name), el("td", s.dpid, "mono"), el("td", s.master || "none"),
    el("td", s.role), yes(s.connected),
  ], { "data-switch": s.name })), "no switches");
}

function migrationRow(m) {
  const cls = m.state === "completed" ? "ok" : (OPEN_STATES.has(m.state) ? "warn" : "bad");
  return row([
    el("td", m.id, "mono"), el("td", m.vm, "mono"), el("td", m.source),
    el("td", m.destination), el("td", m.state, cls), el("td", m.reason || "", "reason"),
  ], { "data-migration": m.id, "data-state": m.state });
}

function renderMigrations(migrations) {
  const error = $("migrations-error");
  error.hidden = !migrations.error;
  error.textContent = migrations.error ? "Leader's migrations unavailable: " + migrations.error : "";
  fill("migrations-open", migrations.open.map(migrationRow), "none open");
  // Newest first on the page; the feed lists them oldest first.
  fill("migrations-recent", migrations.recent.slice().reverse().map(migrationRow), "none yet");
  VportdMigrations.render(migrations); // each row opens its timeline (migrations.js)
}

function stateOf(v) {
  if (v.conflicts && v.conflicts.length) return "conflict";
  return v.migration_state === "migrating" ? "migrating" : v.port_state;
}

function syncOptions(select, values) {
  const keep = select.value;
  const have = Array.from(select.options).slice(1).map((o) => o.value);
  if (have.join("\n") === values.join("\n")) return;
  select.replaceChildren(el("option", "all"), ...values.map((v) => el("option", v)));
  select.options[0].value = "";
  select.value = values.includes(keep) ? keep : "";
}

function renderVports(vports) {
  const error = $("vports-error");
  error.hidden = !vports.error;
  error.textContent = vports.error ? vports.detail : "";
  const rows = vports.rows;
  const hypervisors = [...new Set(rows.map((v) => v.ovs).filter(Boolean))].sort();
  syncOptions($("filter-ovs"), hypervisors);
  // The segment hook: shown once vPorts carry a `segment`.
  const segments = [...new Set(rows.map((v) => v.segment).filter(Boolean))].sort();
  $("filter-segment-label").hidden = segments.length === 0;
  syncOptions($("filter-segment"), segments);
  const ovs = $("filter-ovs").value;
  const state = $("filter-state").value;
  const segment = $("filter-segment").value;
  const shown = rows.filter((v) =>
    (!ovs || v.ovs === ovs) && (!state || stateOf(v) === state || v.port_state === state) &&
    (!segment || v.segment === segment));
  fill("vports", shown.map((v) => row([
    el("td", v.vm, "mono"), el("td", v.ips.join(", "), "mono"), el("td", v.ovs || "-"),
    el("td", v.port_name ? v.port_name + " (" + v.port + ")" : (v.port ?? "-")),
    el("td", v.port_state, v.port_state === "up" ? "ok" : "bad"),
    el("td", v.migration_state === "migrating" ? "to " + v.destination : "-",
       v.migration_state === "migrating" ? "warn" : ""),
    el("td", v.seq),
    el("td", (v.conflicts || []).map((c) => c.port.ovs + "/" + c.port.port).join(", "), "bad"),
  ], { "data-vm": v.vm, "data-ovs": v.ovs || "" })), "no vPorts match");
  $("vport-shown").textContent = shown.length + " of " + rows.length + " shown";
}

function rerender() {
  if (latest) renderVports(latest.vports);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", () => signOut());
  for (const id of ["filter-ovs", "filter-state", "filter-segment"]) {
    $(id).addEventListener("change", rerender);
  }
  start();
});
