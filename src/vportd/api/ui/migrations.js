// vportd dashboard: a migration's timeline and its downtime plot. A click on a migration's row
// opens (or closes) a row under it: the steps the leader saw, in ms from the first, and where a
// VMM or the lab reported the downtime, the packets' arrivals per direction over time with the
// steps marked (the whole report, then close up on the longest gap). Plain JavaScript and SVG,
// no dependencies; app.js calls `VportdMigrations.render(migrations)` after each snapshot.
"use strict";

const VportdMigrations = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 760;
  const LANE = 44; // px per direction
  const TOP = 50; // px above the lanes, for the steps' labels
  const LEFT = 110; // px for the lanes' names
  const BOTTOM = 22; // px for the axis
  const CLOSE_UP_MS = 50; // around the longest gap, at least
  const opened = new Set(); // migration ids whose timeline is open
  let shown = new Map(); // migration id -> the migration, as last rendered

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function html(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function ms(seconds) {
    return (seconds * 1000).toFixed(1) + " ms";
  }

  // -- the timeline ------------------------------------------------------------------------
  function origin(m) {
    if (m.timeline && m.timeline.length) return m.timeline[0].at;
    const firsts = directions(m).filter((d) => d.arrivals.length).map((d) => d.arrivals[0]);
    return firsts.length ? Math.min(...firsts) : 0;
  }

  function timeline(m) {
    const list = html("ol", undefined, "timeline");
    const t0 = origin(m);
    for (const s of m.timeline || []) {
      const item = html("li");
      item.dataset.step = s.step;
      item.append(html("span", s.step, "step"), html("span", "+" + ms(s.at - t0), "offset mono"));
      list.appendChild(item);
    }
    if (!list.children.length) list.appendChild(html("li", "no steps recorded", "muted"));
    return list;
  }

  function directions(m) {
    return (m.downtime && m.downtime.directions) || [];
  }

  function summary(m) {
    const lines = directions(m).map((d) => d.name + ": longest gap " + ms(d.gap_s) + ", lost " + d.lost);
    return html("p", lines.length ? "Downtime (reported): " + lines.join("; ") : "No downtime reported.",
      "downtime-summary");
  }

  // -- the plot ----------------------------------------------------------------------------
  function longestGap(arrivals) {
    let best = null;
    for (let i = 1; i < arrivals.length; i++) {
      const length = arrivals[i] - arrivals[i - 1];
      if (!best || length > best.length) best = { start: arrivals[i - 1], end: arrivals[i], length };
    }
    return best;
  }

  function span(m, lanes) {
    const times = (m.timeline || []).map((s) => s.at);
    for (const d of lanes) times.push(d.arrivals[0], d.arrivals[d.arrivals.length - 1]);
    return [Math.min(...times), Math.max(...times)];
  }

  function closeUp(lanes) {
    const gaps = lanes.map((d) => longestGap(d.arrivals)).filter(Boolean);
    if (!gaps.length) return null;
    const start = Math.min(...gaps.map((g) => g.start));
    const end = Math.max(...gaps.map((g) => g.end));
    const margin = Math.max(CLOSE_UP_MS / 1000, end - start);
    return [start - margin, end + margin];
  }

  function plot(m, lanes, range, title) {
    const [from, to] = range;
    const t0 = origin(m);
    const height = TOP + lanes.length * LANE + BOTTOM;
    const width = WIDTH - LEFT - 10;
    const x = (t) => LEFT + ((t - from) / Math.max(to - from, 1e-6)) * width;
    const root = svg("svg", {
      class: "downtime-plot", viewBox: `0 0 ${WIDTH} ${height}`, width: WIDTH, height,
      role: "img", "aria-label": title,
    });
    root.appendChild(svg("title", {}, title));
    root.appendChild(svg("text", { x: 4, y: 12, class: "plot-title" }, title.split(":")[0]));
    const clip = "clip-" + m.id.replace(/[^A-Za-z0-9_-]/g, "") + "-" + Math.round(from * 1e3);
    const defs = root.appendChild(svg("defs"));
    defs.appendChild(svg("clipPath", { id: clip })).appendChild(
      svg("rect", { x: LEFT, y: 0, width, height }));
    const body = root.appendChild(svg("g", { "clip-path": `url(#${clip})` }));
    lanes.forEach((d, i) => lane(root, body, d, i, x, from, to));
    steps(body, m, x, from, to, height);
    axis(root, x, from, to, t0, TOP + lanes.length * LANE);
    return root;
  }

  function lane(root, body, d, i, x, from, to) {
    const y = TOP + i * LANE;
    root.appendChild(svg("text", { x: 4, y: y + LANE / 2 + 4, class: "lane-name" }, d.name));
    root.appendChild(svg("line", { x1: LEFT, x2: WIDTH - 10, y1: y + LANE - 4, y2: y + LANE - 4,
      class: "lane-base" }));
    const gap = longestGap(d.arrivals);
    if (gap) {
      const shade = body.appendChild(svg("rect", { x: x(gap.start), y: y + 2, height: LANE - 6,
        width: Math.max(1, x(gap.end) - x(gap.start)), class: "gap" }));
      shade.appendChild(svg("title", {}, d.name + ": longest gap " + ms(gap.length)));
    }
    const ticks = d.arrivals.filter((t) => t >= from && t <= to)
      .map((t) => `M${x(t).toFixed(1)} ${y + 8}V${y + LANE - 4}`).join("");
    body.appendChild(svg("path", { d: ticks || "M0 0", class: "arrivals", "data-direction": d.name }));
  }

  function steps(body, m, x, from, to, height) {
    (m.timeline || []).filter((s) => s.at >= from && s.at <= to).forEach((s, i) => {
      const at = x(s.at).toFixed(1);
      const mark = body.appendChild(svg("g", { class: "step-mark", "data-step": s.step }));
      mark.appendChild(svg("line", { x1: at, x2: at, y1: 12 + (i % 4) * 10, y2: height - BOTTOM }));
      mark.appendChild(svg("text", { x: Number(at) + 3, y: 10 + (i % 4) * 10 }, s.step));
    });
  }

  function axis(root, x, from, to, t0, y) {
    const g = root.appendChild(svg("g", { class: "axis" }));
    g.appendChild(svg("line", { x1: LEFT, x2: WIDTH - 10, y1: y, y2: y }));
    for (let k = 0; k <= 4; k++) {
      const t = from + ((to - from) * k) / 4;
      const anchor = k === 0 ? "start" : k === 4 ? "end" : "middle";
      g.appendChild(svg("text", { x: x(t), y: y + 15, "text-anchor": anchor },
        ((t - t0) * 1000).toFixed(0) + " ms"));
    }
  }

  // -- the rows ----------------------------------------------------------------------------
  function detail(m, columns) {
    const tr = html("tr", undefined, "migration-detail");
    tr.dataset.timelineFor = m.id;
    const td = html("td");
    td.colSpan = columns;
    td.append(html("h4", "Timeline (ms from " + ((m.timeline || [])[0] || { step: "-" }).step + ")"),
      timeline(m), summary(m));
    const lanes = directions(m).filter((d) => d.arrivals && d.arrivals.length);
    if (lanes.length) {
      td.appendChild(plot(m, lanes, span(m, lanes), "packets received: " + m.id));
      const near = closeUp(lanes);
      if (near) td.appendChild(plot(m, lanes, near, "close up on the gap: " + m.id));
    }
    tr.appendChild(td);
    return tr;
  }

  function toggle(id) {
    if (opened.has(id)) opened.delete(id);
    else opened.add(id);
    decorate();
  }

  function decorate() {
    for (const tr of document.querySelectorAll("tr.migration-detail")) tr.remove();
    for (const tr of document.querySelectorAll("tr[data-migration]")) {
      const id = tr.dataset.migration;
      tr.classList.add("openable");
      tr.title = "show or hide its timeline";
      tr.setAttribute("aria-expanded", opened.has(id) ? "true" : "false");
      tr.onclick = () => toggle(id);
      const m = shown.get(id);
      if (m && opened.has(id)) tr.after(detail(m, tr.cells.length));
    }
  }

  function render(migrations) {
    shown = new Map([...migrations.open, ...migrations.recent].map((m) => [m.id, m]));
    for (const id of [...opened]) if (!shown.has(id)) opened.delete(id);
    decorate();
  }

  return { render, toggle };
})();
