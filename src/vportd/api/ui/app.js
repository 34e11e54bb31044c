// vportd dashboard: reads GET /v1/events (server-sent events) with the bearer token and
// renders each snapshot. Plain JavaScript, no dependencies. The token stays in
// sessionStorage (this tab only) and is sent in the Authorization header, never in a URL.
"use strict";

const TOKEN_KEY = "vportd.token";
const RETRY_MS = 2000;
// A stream given up a moment ago (a new filter or page) may still hold its place on the
// controller (503 too-many-streams) until the server sees it gone: retry soon, a few times.
const QUICK_RETRY_MS = 200;
const QUICK_RETRIES = 10;
const FIND_DELAY_MS = 300; // typing in the search box restarts the stream once it pauses
const OPEN_STATES = new Set(["preparing", "ready", "activated"]);
const MOVES_SHOWN = 3; // recent moves a vPort's row lists
const MOVES_KEPT = 5; // per VM
const VMS_KEPT = 20000; // VMs whose moves the page remembers
let latest = null;
let stream = null; // the AbortController of the running read, if any
// The vPort table the feed sends: the controller filters and pages it (one page of rows).
const view = { ovs: "", segment: "", state: "", find: "", page: 0 };
// Each VM's moves this page has seen in the feed's migrations: vm -> Map(id -> move).
const moves = new Map();
let fedOnce = false; // a snapshot's migrations were remembered already

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

function eventsUrl() {
  const query = new URLSearchParams();
  for (const key of ["ovs", "segment", "state", "find"]) if (view[key]) query.set(key, view[key]);
  if (view.page) query.set("page", String(view.page));
  const text = query.toString();
  return "/v1/events" + (text ? "?" + text : "");
}

async function follow(token, signal) {
  let quick = QUICK_RETRIES;
  while (!signal.aborted) {
    setStatus("connecting", "");
    let busy = false;
    try {
      const answer = await fetch(eventsUrl(), {
        headers: { Authorization: "Bearer " + token, Accept: "text/event-stream" },
        cache: "no-store",
        signal,
      });
      if (answer.status === 401 || answer.status === 403) {
        const body = await answer.json().catch(() => ({}));
        return signOut("Refused: " + (body.detail || answer.status));
      }
      busy = answer.status === 503;
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      setStatus("live", "live");
      await readEvents(answer.body, signal);
    } catch (err) {
      if (signal.aborted) return;
      console.warn("event stream:", err);
    }
    setStatus("reconnecting", "down");
    const wait = busy && quick-- > 0 ? QUICK_RETRY_MS : RETRY_MS;
    await new Promise((done) => setTimeout(done, wait));
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
    while ((end = buffer.indexOf("\n\n")) >= 0 && !signal.aborted) {
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
  remember(snap.migrations);
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

// -- the vPort table --------------------------------------------------------------------
// Each VM's moves, from the migrations the feed carries (open ones and the leader's recent
// ones), kept while the page is open: a move's time is its notify's (the first step of its
// timeline), or else when this page first saw it.
function remember(migrations) {
  for (const m of [...migrations.recent, ...migrations.open]) {
    let mine = moves.get(m.vm);
    if (!mine) {
      if (moves.size >= VMS_KEPT) moves.delete(moves.keys().next().value);
      mine = new Map();
      moves.set(m.vm, mine);
    }
    const known = mine.get(m.id);
    const before = !fedOnce && !OPEN_STATES.has(m.state); // ended before the page opened
    const first = (m.timeline || [])[0];
    const seen = first ? new Date(first.at * 1000) : known ? known.seen : (before ? null : new Date());
    mine.set(m.id, { id: m.id, from: m.source, to: m.destination, state: m.state, seen });
    while (mine.size > MOVES_KEPT) mine.delete(mine.keys().next().value);
  }
  fedOnce = fedOnce || !migrations.error;
}

function clock(date) {
  return date.toTimeString().slice(0, 8);
}

function movesCell(vm) {
  const td = el("td", null, "moves");
  const mine = [...(moves.get(vm) || new Map()).values()].reverse().slice(0, MOVES_SHOWN);
  for (const m of mine) {
    const cls = m.state === "completed" ? "ok" : (OPEN_STATES.has(m.state) ? "warn" : "bad");
    const when = m.seen ? " " + clock(m.seen) : "";
    const move = el("div", m.from + " \u2192 " + m.to + " " + m.state + when, "move " + cls);
    move.dataset.migration = m.id;
    move.dataset.state = m.state;
    td.appendChild(move);
  }
  return td;
}

function syncOptions(select, values) {
  const keep = select.value;
  const have = Array.from(select.options).slice(1).map((o) => o.value);
  if (have.join("\n") === values.join("\n")) return;
  select.replaceChildren(el("option", "all"), ...values.map((v) => el("option", v)));
  select.options[0].value = "";
  select.value = values.includes(keep) ? keep : "";
}

function vportRow(v) {
  const migrating = v.migration_state === "migrating";
  return row([
    el("td", v.vm, "mono"), el("td", v.ips.join(", "), "mono"), el("td", v.ovs || "-"),
    el("td", String(v.segment)),
    el("td", v.port_name ? v.port_name + " (" + v.port + ")" : (v.port ?? "-")),
    el("td", v.port_state, v.port_state === "up" ? "ok" : "bad"),
    el("td", migrating ? "to " + v.destination : "-", migrating ? "warn" : ""),
    el("td", v.seq),
    el("td", (v.conflicts || []).map((c) => c.port.ovs + "/" + c.port.port).join(", "), "bad"),
    movesCell(v.vm),
  ], { "data-vm": v.vm, "data-ovs": v.ovs || "" });
}

function renderVports(vports) {
  const error = $("vports-error");
  error.hidden = !vports.error;
  error.textContent = vports.error ? vports.detail : "";
  // The chosen hypervisor stays a choice while it has no vPorts (0 matching).
  const hypervisors = new Set([...vports.hypervisors, view.ovs]);
  syncOptions($("filter-ovs"), [...hypervisors].filter(Boolean).sort());
  // Segments as tags (0: untagged); the chosen one stays a choice, as the hypervisor.
  const segments = new Set([...vports.segments.map(String), view.segment]);
  syncOptions($("filter-segment"), [...segments].filter((s) => s !== "").sort((a, b) => a - b));
  view.page = vports.page; // the controller's, if the table shrank under this page
  const rows = vports.rows;
  fill("vports", rows.map(vportRow), "no vPorts match");
  const first = vports.page * vports.size;
  const pages = Math.max(1, Math.ceil(vports.matched / vports.size));
  $("vport-shown").textContent = (rows.length ? (first + 1) + "\u2013" + (first + rows.length) : "0")
    + " of " + vports.matched + " matching (" + vports.total + " vPorts)";
  $("page-info").textContent = "page " + (vports.page + 1) + " of " + pages;
  $("page-prev").disabled = vports.page === 0;
  $("page-next").disabled = vports.page + 1 >= pages;
}

// A new filter or page: the controller filters and pages, so the stream starts again.
function reshow(changes) {
  Object.assign(view, changes);
  $("vport-shown").textContent = "loading\u2026";
  if (sessionStorage.getItem(TOKEN_KEY)) start();
}

let findTimer = null;

function onFind() {
  clearTimeout(findTimer);
  findTimer = setTimeout(() => reshow({ find: $("filter-find").value.trim(), page: 0 }),
                         FIND_DELAY_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", () => signOut());
  $("filter-ovs").addEventListener("change", () => reshow({ ovs: $("filter-ovs").value, page: 0 }));
  $("filter-segment").addEventListener(
    "change", () => reshow({ segment: $("filter-segment").value, page: 0 }));
  $("filter-state").addEventListener(
    "change", () => reshow({ state: $("filter-state").value, page: 0 }));
  $("filter-find").addEventListener("input", onFind);
  $("page-prev").addEventListener("click", () => reshow({ page: Math.max(0, view.page - 1) }));
  $("page-next").addEventListener("click", () => reshow({ page: view.page + 1 }));
  start();
});
