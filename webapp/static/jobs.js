// redisq: the job lists, the job page and the dashboard's graphs (issue 16). Plain JS, no build
// step; uses $, esc, num, ago, post and stream from app.js. Graphs are inline SVG built through
// the DOM (no inline styles or scripts: the pages' Content-Security-Policy allows neither).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}
function fmtNum(v) { return v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v >= 0.01 ? v.toFixed(2) : v ? v.toPrecision(1) : "0"; }
// A line chart: series = [{values: [number|null], cls, label}], one value per `step` seconds from
// `start`. Drawn at the box's own pixel width (no stretching: the labels stay readable); a
// value with no neighbour is a dot.
function lineChart(box, series, start, step, unit, floor) {
  const W = Math.max(200, Math.round(box.clientWidth || 600)), H = 140, L = 40, B = 16, T = 8;
  const seen = series.flatMap((s) => s.values.filter((v) => v !== null));
  const max = Math.max(floor, ...seen);
  const n = Math.max(...series.map((s) => s.values.length), 2);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": series.map((s) => { const v = s.values.filter((x) => x !== null); return `${s.label}: latest ${v.length ? fmtNum(v[v.length - 1]) + unit : "none"}, max ${fmtNum(Math.max(0, ...v))}${unit}`; }).join("; ") });
  const x = (i) => L + (i / (n - 1)) * (W - L - 4), y = (v) => T + (1 - v / max) * (H - T - B);
  svgEl("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis" }, svg);
  svgEl("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }, svg);
  svgEl("text", { x: 2, y: T + 4 }, svg).textContent = fmtNum(max) + unit;
  svgEl("text", { x: 2, y: H - B }, svg).textContent = "0";
  for (const frac of [0, 0.5, 1]) {
    const at = new Date((start + frac * (n - 1) * step) * 1000);
    svgEl("text", { x: Math.min(x(frac * (n - 1)) - (frac ? 16 : 0), W - 34), y: H - 3 }, svg).textContent = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  for (const s of series) {
    let d = "";
    s.values.forEach((v, i) => {
      if (v === null) return;
      const prev = i > 0 && s.values[i - 1] !== null, next = i + 1 < s.values.length && s.values[i + 1] !== null;
      if (!prev && !next) svgEl("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, class: "dot dot-" + s.cls }, svg);
      d += `${prev ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    });
    if (d) svgEl("path", { d, class: "line line-" + s.cls }, svg);
  }
  box.replaceChildren(svg);
}
// Per-second counts summed into bins of `bin` seconds, as a rate per second.
function binned(values, bin) {
  const out = [];
  for (let i = 0; i < values.length; i += bin) out.push(values.slice(i, i + bin).reduce((a, b) => a + num(b), 0) / bin);
  return out;
}
function drawGraphs(data) {
  const bin = 10;
  lineChart($("#g-rate"), [{ values: binned(data.processed, bin), cls: "processed", label: "processed per second" },
    { values: binned(data.failed, bin), cls: "failed", label: "failed per second" }], data.start, bin, "/s", 1);
  lineChart($("#g-depth"), [{ values: data.depth, cls: "depth", label: "depth" }], data.start, 60, "", 1);
  lineChart($("#g-latency"), [{ values: data.latency_p50, cls: "p50", label: "p50" },
    { values: data.latency_p95, cls: "p95", label: "p95" }], data.start, 60, " s", 0.01);
}
// The dashboard asks for the graphs' data every few snapshots (the snapshot stream drives it).
function graphsOnDashboard() {
  const select = $("#graph-queue");
  if (!select) return () => {};
  let busy = false, count = 0;
  async function refresh() {
    if (busy) return; busy = true;
    try {
      const q = select.value;
      const res = await fetch(at("/api/series") + (q ? "?queue=" + encodeURIComponent(q) : ""));
      if (res.ok) drawGraphs(await res.json());
    } finally { busy = false; }
  }
  select.addEventListener("change", refresh);
  return (snapshot) => {
    const names = Object.keys(snapshot.queues || {});
    const have = [...select.options].map((o) => o.value);
    for (const n of names) if (!have.includes(n)) select.add(new Option(n, n));
    if (count++ % 5 === 0) refresh();
  };
}

const LIST_STATUS = { queued: "queued", running: "started", scheduled: "scheduled", retrying: "retrying", failed: "failed", succeeded: "succeeded", cancelled: "cancelled" };
function shortId(id) { return String(id).slice(0, 12); }
function when(j) { const t = num(j.at || j.due_at || j.started_at || j.enqueued_at); return t ? new Date(t * 1000).toLocaleString() : ""; }

function redisqJobs() {
  const form = $("#filters"), fields = ["status", "queue", "task", "q", "error", "last"];
  let offset = 0, nextOffset = null;
  const params = new URLSearchParams(location.search);
  for (const f of fields) if (params.get(f)) $("#f-" + f).value = params.get(f);
  function query() {
    const p = new URLSearchParams();
    for (const f of fields) { const v = $("#f-" + f).value.trim(); if (v) p.set(f, v); }
    return p;
  }
  function markTab() {
    const st = $("#f-status").value;
    for (const b of document.querySelectorAll(".tab")) b.setAttribute("aria-pressed", String(LIST_STATUS[b.dataset.list] === st));
  }
  async function load() {
    const p = query(); markTab();
    p.set("offset", offset); p.set("limit", 50);
    const res = await fetch(at("/api/jobs?") + p);
    const data = await res.json().catch(() => ({}));
    if (!res.ok) { $("#list-note").textContent = "error: " + (data.error || res.statusText); return; }
    nextOffset = data.next_offset;
    rows("#list", data.jobs || [], (j) => {
      const detail = j.error_type ? `${esc(j.error_type)}: ${esc(j.error_message)}` : esc(j.args || "");
      return `<tr><td><input type="checkbox" class="pick" value="${esc(j.id)}" aria-label="select ${esc(shortId(j.id))}"></td>` +
        `<td><a href="${at("/jobs")}/${encodeURIComponent(j.id)}"><code>${esc(shortId(j.id))}</code></a></td><td>${esc(j.queue)}</td><td>${esc(j.task)}</td>` +
        `<td class="status status-${esc(j.status)}">${esc(j.expired ? j.status + " (record expired)" : j.status)}</td><td>${num(j.attempts)}</td>` +
        `<td>${esc(when(j))}</td><td class="${j.error_type ? "error" : ""}">${detail}</td></tr>`;
    }, "no jobs match");
    $("#prev").disabled = offset === 0; $("#next").disabled = nextOffset === null;
    $("#list-note").textContent = (data.truncated ? "only the newest indexed jobs were searched; narrow the filters. " : "") + (offset ? `from #${offset + 1}` : "");
    $("#select-all").checked = false; picked();
  }
  function picked() {
    const ids = [...document.querySelectorAll(".pick:checked")].map((c) => c.value);
    $("#bulk-retry").disabled = $("#bulk-delete").disabled = ids.length === 0;
    return ids;
  }
  function search() { offset = 0; window.history.replaceState(null, "", at("/jobs?") + query()); load(); }
  form.addEventListener("submit", (e) => { e.preventDefault(); search(); });
  for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => { $("#f-status").value = LIST_STATUS[b.dataset.list]; search(); });
  $("#prev").addEventListener("click", () => { offset = Math.max(0, offset - 50); load(); });
  $("#next").addEventListener("click", () => { if (nextOffset !== null) { offset = nextOffset; load(); } });
  $("#list").addEventListener("change", (e) => {
    if (e.target.id === "select-all") for (const c of document.querySelectorAll(".pick")) c.checked = e.target.checked;
    picked();
  });
  async function bulk(action) {
    const ids = picked();
    if (action === "delete" && !confirm(`Delete ${ids.length} job(s)? This cannot be undone.`)) return;
    try {
      const r = await post("/jobs/bulk", { action, jobs: ids });
      const refused = Object.keys(r.refused || {}).length;
      $("#bulk-msg").textContent = `${action}: ${r.done} done` + (refused ? `, ${refused} refused (${Object.values(r.refused)[0]})` : "");
    } catch (err) { $("#bulk-msg").textContent = "error: " + err.message; }
    load();
  }
  $("#bulk-retry").addEventListener("click", () => bulk("retry"));
  $("#bulk-delete").addEventListener("click", () => bulk("delete"));
  // Live: job events (over the page's one stream) refresh the first page, at most once a second.
  let pending = false;
  function soon() {
    if (pending || offset !== 0 || picked().length) return;  // never under the user's selection
    pending = true; setTimeout(() => { pending = false; load(); }, 1000);
  }
  stream("/events", (es) => {
    es.addEventListener("snapshot", () => { $("#live").textContent = "live"; $("#live").classList.add("on"); });
    es.addEventListener("job", soon);
  }, (st) => { $("#live").textContent = st === "live" ? "live" : st; $("#live").classList.toggle("on", st === "live"); });
  load();
}

// Long values fold: the first line shows, the rest opens on demand.
function folded(value) {
  const text = JSON.stringify(value, null, 2) ?? "null";
  if (text.length <= 120 && !text.includes("\n")) return `<code>${esc(text)}</code>`;
  if (text.length <= 120) return `<pre>${esc(text)}</pre>`;
  return `<details><summary><code>${esc(text.slice(0, 80).replace(/\s+/g, " "))}…</code> (${text.length} chars)</summary><pre>${esc(text)}</pre></details>`;
}
const TIME_LABELS = { enqueued_at: "enqueued", due_at: "due", started_at: "started", finished_at: "finished", next_attempt_at: "next attempt" };

function redisqJob() {
  const id = $("#job").dataset.job;
  let job = null;
  async function load() {
    const res = await fetch(at("/api/jobs/") + encodeURIComponent(id));
    const data = await res.json().catch(() => ({}));
    if (!res.ok) { $("#job-status").textContent = data.error || res.statusText; return; }
    job = data; render();
  }
  function render() {
    const j = job;
    if (j.id !== id) { window.history.replaceState(null, "", at("/jobs/") + encodeURIComponent(j.id)); $("#job-id").textContent = j.id; }
    $("#job-status").textContent = j.status; $("#job-status").className = "status status-" + j.status;
    const items = [["task", esc(j.task)], ["queue", esc(j.queue)], ["attempts", num(j.attempts)], ["worker", esc(j.worker || "")]];
    if (j.status === "started") items.push(["progress", bar(j.progress) + " " + esc(j.progress_message || "")]);
    for (const [k, label] of Object.entries(TIME_LABELS)) if (j[k]) items.push([label, `${esc(new Date(num(j[k]) * 1000).toLocaleString())} <span class="muted">(${esc(ago(j[k]))})</span>`]);
    $("#summary").innerHTML = items.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join(""); fillBars($("#summary"));
    if (j.arguments_complete) {
      const kw = Object.entries(j.kwargs || {});
      $("#arguments").innerHTML = `<dl class="summary"><dt>args</dt><dd>${(j.args || []).map((a, i) => `<div><span class="muted">${i}</span> ${folded(a)}</div>`).join("") || '<span class="muted">none</span>'}</dd>` +
        `<dt>kwargs</dt><dd>${kw.map(([k, v]) => `<div><span class="muted">${esc(k)} =</span> ${folded(v)}</div>`).join("") || '<span class="muted">none</span>'}</dd></dl>`;
    } else $("#arguments").innerHTML = `<pre>${esc(j.args || "(none kept)")}</pre><div class="muted">a summary: the whole message is kept for failed jobs only (args_summary_bytes)</div>`;
    $("#headers-card").hidden = !j.headers; $("#headers").textContent = j.headers ? JSON.stringify(j.headers, null, 2) : "";
    $("#workflow-card").hidden = !j.workflow; $("#workflow").textContent = j.workflow ? JSON.stringify(j.workflow, null, 2) : "";
    const failed = Boolean(j.error_type);
    $("#outcome-title").textContent = failed ? "Error" : "Result";
    $("#error").textContent = failed ? `${j.error_type}: ${j.error_message || ""}` : "";
    $("#traceback").hidden = !j.traceback; $("#traceback").textContent = j.traceback || "";
    $("#result").hidden = j.status !== "succeeded"; $("#result").textContent = j.status === "succeeded" ? JSON.stringify(j.result, null, 2) : "";
    rows("#history", j.history || [], (h) => `<tr><td>${esc(new Date(num(h.at) * 1000).toLocaleString())}</td><td class="status status-${esc(h.event)}">${esc(h.event)}</td><td>${esc(h.from ? "was " + h.from : "")}</td></tr>`, "no history");
    $("#act-retry").disabled = !["failed", "dead", "retrying", "cancelled"].includes(j.status);
    $("#act-cancel").disabled = !["queued", "retrying"].includes(j.status);
    $("#act-delete").disabled = j.status === "started";
    $("#act-copy").disabled = !j.arguments_complete;
  }
  const CONFIRM = { delete: "Delete this job (record, waiting message, index entries)? This cannot be undone.", cancel: "Cancel this job? It will not run." };
  document.querySelector(".actions").addEventListener("click", async (e) => {
    const b = e.target.closest("button[data-action]"); if (!b || !job) return;
    const action = b.dataset.action;
    if (CONFIRM[action] && !confirm(CONFIRM[action])) return;
    try {
      const r = await post(`/jobs/${encodeURIComponent(job.id)}/${action}`);
      if (action === "copy") { $("#action-msg").innerHTML = `queued a copy: <a href="${at("/jobs")}/${encodeURIComponent(r.job_id)}">${esc(shortId(r.job_id))}</a>`; }
      else $("#action-msg").textContent = action === "delete" ? "deleted" : `${action}: done`;
      if (action === "delete") { $("#job-status").textContent = "deleted"; return; }
    } catch (err) { $("#action-msg").textContent = "error: " + err.message; }
    load();
  });
  stream("/events", (es) => {
    es.addEventListener("snapshot", () => { $("#live").textContent = "live"; $("#live").classList.add("on"); });
    es.addEventListener("job", (e) => { const ev = JSON.parse(e.data); if (job && ev.id === job.id) load(); });
    es.addEventListener("progress", (e) => { const ev = JSON.parse(e.data); if (job && ev.id === job.id) { Object.assign(job, { progress: ev.progress, progress_message: ev.message, status: "started" }); render(); } });
  }, (st) => { $("#live").textContent = st === "live" ? "live" : st; $("#live").classList.toggle("on", st === "live"); });
  load();
}
