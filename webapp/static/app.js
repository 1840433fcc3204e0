// redisq front end: plain JS, no build step, nothing loaded from elsewhere.
// Writes send the token (if one is set in the header field) as a bearer token. Reads that need
// a token (the event streams: EventSource cannot send headers) use the session cookie that
// POST /login sets from the same field.
"use strict";
const $ = (sel) => document.querySelector(sel);
const TOKEN_KEY = "redisq-token";
const tokenChanged = [];  // what to restart once a new token is logged in (the streams)
// Where the app is mounted ("" at the root, "/queue" inside a host app's Flask app under
// that prefix): every path below is the app's own, written from its root.
const ROOT = (document.body.dataset.root || "/").replace(/\/$/, "");
const at = (path) => ROOT + path;

function currentToken() { return ($("#token") && $("#token").value) || sessionStorage.getItem(TOKEN_KEY) || ""; }
async function login(token) {
  const res = await fetch(at(token ? "/login" : "/logout"), { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }) });
  return res.ok;
}
// Resolves once the stored token (if any) is logged in: the pages open their streams after it.
const loggedIn = new Promise((done) => document.addEventListener("DOMContentLoaded", () => {
  const t = $("#token"); if (!t) { done(); return; }
  t.value = sessionStorage.getItem(TOKEN_KEY) || "";
  t.addEventListener("change", async () => {
    sessionStorage.setItem(TOKEN_KEY, t.value);
    t.classList.toggle("bad", !(await login(t.value).catch(() => false)));
    tokenChanged.forEach((restart) => restart());
  });
  (t.value ? login(t.value).catch(() => false) : Promise.resolve(true)).then(() => done());
}));

async function post(url, body) {
  const headers = { "Content-Type": "application/json" };
  const token = currentToken();
  if (token) headers.Authorization = "Bearer " + token;
  const res = await fetch(at(url), { method: "POST", headers, body: JSON.stringify(body === undefined ? {} : body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}
// An EventSource that comes back after a refusal too (a 401 before login, a 503 when the
// server's streams are all taken): the browser retries by itself only after a stream ended.
function stream(url, setup, onState) {
  let es = null, timer = null;
  function open() {
    if (es) es.close();
    clearTimeout(timer);
    const source = es = new EventSource(at(url));
    setup(source);
    source.addEventListener("open", () => onState("live"));
    source.addEventListener("error", async () => {
      if (source !== es) return;  // replaced meanwhile
      if (source.readyState !== EventSource.CLOSED) { onState("reconnecting"); return; }
      const probe = await fetch(at("/api/snapshot"), { method: "HEAD" }).catch(() => null);
      onState(probe && probe.status === 401 ? "token" : "reconnecting");
      timer = setTimeout(open, 5000);
    });
  }
  tokenChanged.push(open);
  loggedIn.then(open);
  return { close: () => { clearTimeout(timer); if (es) es.close(); tokenChanged.splice(tokenChanged.indexOf(open), 1); } };
}
function esc(v) { return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c])); }
function rows(table, items, render, empty) {
  const body = $(table + " tbody");
  body.innerHTML = items.length ? items.map(render).join("")
    : `<tr><td colspan="9" class="muted">${esc(empty)}</td></tr>`;
  fillBars(body);
}
// Every number that goes into markup goes through num(): a string in stored data stays text.
function num(v) { const n = Number(v); return Number.isFinite(n) ? n : 0; }
function ago(ts) {
  ts = num(ts);
  if (!ts) return "";
  const s = Math.max(0, Date.now() / 1000 - ts);
  return s < 60 ? s.toFixed(0) + " s ago" : s < 3600 ? (s / 60).toFixed(0) + " min ago" : (s / 3600).toFixed(1) + " h ago";
}
function bar(fraction) {
  const pct = (Math.max(0, Math.min(1, num(fraction))) * 100).toFixed(0);
  return `<span class="bar" role="progressbar" aria-valuenow="${pct}"><span></span></span> ${pct}%`;
}
// Widths are set through the DOM, not style="" in markup: the CSP allows no inline styles.
function fillBars(root) {
  for (const el of root.querySelectorAll(".bar[aria-valuenow]")) el.firstElementChild.style.width = el.getAttribute("aria-valuenow") + "%";
}
const FINAL = ["succeeded", "dead", "failed", "cancelled", "expired"];

function redisqDashboard() {
  const jobs = new Map();  // the jobs this page enqueued, newest last
  function renderJobs() {
    rows("#jobs", [...jobs.values()].reverse(), (j) =>
      `<tr data-job="${esc(j.id)}"><td><a href="${at("/jobs")}/${encodeURIComponent(j.id)}"><code title="${esc(j.id)}">${esc(String(j.id).slice(0, 8))}</code></a></td><td>${esc(j.task)}</td>` +
      `<td class="status status-${esc(j.status)}">${esc(j.status)}</td>` +
      `<td>${j.status === "started" && j.progress !== undefined ? bar(j.progress) + " " : ""}${esc(j.detail || "")}</td>` +
      `<td>${j.status === "queued" ? `<button data-cancel="${esc(j.id)}">cancel</button>` : ""}</td></tr>`,
    "nothing enqueued from this page yet");
  }
  async function refreshJob(id) {
    const res = await fetch(at("/jobs/" + encodeURIComponent(id))); if (!res.ok) return;
    const j = await res.json();
    const detail = j.status === "succeeded" ? JSON.stringify(j.result)
      : j.error_message ? `${j.error_type || "error"}: ${j.error_message}` : (j.progress_message || "");
    jobs.set(id, { id, task: j.task, status: j.status, progress: j.progress, detail });
    renderJobs();
  }
  function renderSnapshot(s) {
    const list = (v) => (Array.isArray(v) ? v : []);
    const running = list(s.running);
    rows("#queues", Object.entries(s.queues || {}), ([q, c]) =>
      `<tr><td><a href="${at("/jobs")}?queue=${encodeURIComponent(q)}">${esc(q)}</a>${c.paused ? ' <span class="badge paused">paused</span>' : ""}` +
      `${c.throttled ? ` <span class="badge" title="starts sent back by a rate or concurrency limit">throttled ${num(c.throttled)}</span>` : ""}</td><td><a href="${at("/jobs")}?status=queued&queue=${encodeURIComponent(q)}">${num(c.depth)}</a></td><td>${num(c.in_flight)}</td><td><a href="${at("/jobs")}?status=scheduled&queue=${encodeURIComponent(q)}">${num(c.delayed)}</a></td><td><a href="${at("/jobs")}?status=failed&queue=${encodeURIComponent(q)}">${num(c.dead_letters)}</a></td>` +
      `<td><a href="${at("/jobs")}?status=succeeded&queue=${encodeURIComponent(q)}">${num(c.succeeded)}</a></td><td>${num(c.rate)}</td><td class="actions"><button data-act="requeue" data-q="${esc(q)}">retry dead</button> ` +
      `<button data-act="purge" data-q="${esc(q)}">purge</button></td></tr>`, "no queues yet");
    rows("#workers", list(s.workers), (w) =>
      `<tr><td>${esc(w.id)}</td><td>${esc(w.mode)}</td><td>${esc(list(w.queues || w.channels).join(", "))}</td>` +
      `<td>${num(w.processed)}</td><td>${num(w.failed)}</td><td>${num(running.filter((j) => j.worker === w.id).length)}</td><td>${esc(ago(w.last_seen))}</td></tr>`,
    "no live worker: start one with  redisq worker --app webapp.tasks:app");
    rows("#failures", list(s.failures), (f) =>
      `<tr><td>${esc(ago(f.failed_at))}</td><td>${esc(f.queue)}</td><td>${esc(f.task)}</td>` +
      `<td class="error">${esc(f.error_type)}: ${esc(f.reason)}</td><td>${f.job_id ? `<a href="${at("/jobs")}/${encodeURIComponent(f.job_id)}"><code>${esc(String(f.job_id).slice(0, 8))}</code></a>` : ""}</td></tr>`,
    "no failures");
    rows("#running", running, (j) =>
      `<tr data-running="${esc(j.id)}"><td>${esc(j.task)}</td><td><a href="${at("/jobs")}/${encodeURIComponent(j.id)}"><code>${esc(String(j.id).slice(0, 8))}</code></a></td>` +
      `<td class="progress">${bar(j.progress)}</td><td class="progress-msg">${esc(j.progress_message)}</td><td>${esc(j.worker)}</td></tr>`,
    "nothing running");
    const scheduled = list(s.scheduled);
    $("#scheduled").innerHTML = scheduled.length ? scheduled.map((p) => {
      const next = num(p.next_at);
      return `<div><strong>${esc(p.name)}</strong> ${esc(p.schedule || "")} — next ${next ? esc(new Date(next * 1000).toLocaleTimeString()) + ` (in ${num(Math.max(0, next - Date.now() / 1000)).toFixed(0)} s)` : "?"}</div>`;
    }).join("") : "no periodic jobs";
  }
  function setLive(text, on) { $("#live").textContent = text; $("#live").classList.toggle("on", on); }
  const graphs = graphsOnDashboard();  // jobs.js
  const LIVE = { live: "live", reconnecting: "reconnecting…", token: "token required: enter it above" };
  stream("/events", (es) => {
    es.addEventListener("redis", () => setLive("redis unreachable, retrying…", false));
    es.addEventListener("snapshot", (e) => { setLive("live", true); const snap = JSON.parse(e.data); renderSnapshot(snap); graphs(snap); });
    es.addEventListener("job", (e) => {
      const ev = JSON.parse(e.data);
      if (ev.id && jobs.has(ev.id)) refreshJob(ev.id);
    });
    es.addEventListener("progress", onProgress);
  }, (st) => setLive(LIVE[st], st === "live"));
  function onProgress(e) {  // move the bars between snapshots
    const ev = JSON.parse(e.data);
    const row = document.querySelector(`tr[data-running="${CSS.escape(String(ev.id))}"]`);
    if (row) {
      row.querySelector(".progress").innerHTML = bar(ev.progress); fillBars(row);
      row.querySelector(".progress-msg").textContent = ev.message || "";
    }
    const j = jobs.get(ev.id);
    if (j && !FINAL.includes(j.status)) { Object.assign(j, { status: "started", progress: ev.progress, detail: ev.message || "" }); renderJobs(); }
  }
  renderJobs();
  $("#enqueue").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const task = $("#task").value;
      const r = await post("/prodcons", { task, args: JSON.parse($("#args").value || "[]") });
      jobs.set(r.job_id, { id: r.job_id, task, status: "queued" }); renderJobs();
      $("#enqueue-msg").textContent = (r.duplicate ? "already queued: " : "queued ") + r.job_id;
      refreshJob(r.job_id);  // it may have finished before the page heard the event
    } catch (err) { $("#enqueue-msg").textContent = "error: " + err.message; }
  });
  document.body.addEventListener("click", async (e) => {
    const b = e.target.closest("button[data-act], button[data-cancel]"); if (!b) return;
    try {
      if (b.dataset.cancel) { await post(`/jobs/${encodeURIComponent(b.dataset.cancel)}/cancel`); refreshJob(b.dataset.cancel); return; }
      if (b.dataset.act === "purge" && !confirm(`Delete every waiting job of ${b.dataset.q}?`)) return;
      const r = await post(`/queues/${encodeURIComponent(b.dataset.q)}/${b.dataset.act}`);
      $("#enqueue-msg").textContent = `${b.dataset.act} ${b.dataset.q}: ${r.requeued ?? r.purged} job(s)`;
    } catch (err) { $("#enqueue-msg").textContent = "error: " + err.message; }
  });
  // The example arguments follow the selected task.
  const examples = { "demo.add": "[2, 3]", "demo.slow_count": "[20, 0.25]", "demo.bulk_update": "[7, 2000]", "demo.fail": '["boom"]' };
  $("#task").addEventListener("change", () => { if (examples[$("#task").value]) $("#args").value = examples[$("#task").value]; });
}

function redisqProdcons() {
  $("#add").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("#job-result").textContent = "–";
    try {
      const r = await post("/prodcons", { task: "demo.add", args: [Number($("#a").value), Number($("#b").value)] });
      $("#job-id").textContent = r.job_id;
      for (let i = 0; i < 600; i++) {  // poll the status URL: the classic producer/consumer loop
        const j = await (await fetch(r.status_url)).json();
        $("#job-status").textContent = j.status;
        if (j.status === "succeeded") { $("#job-result").textContent = JSON.stringify(j.result); return; }
        if (FINAL.includes(j.status)) { $("#job-result").textContent = j.error_message || j.status; return; }
        await new Promise((ok) => setTimeout(ok, 100));
      }
    } catch (err) { $("#job-status").textContent = "error: " + err.message; }
  });
}

function redisqPubsub() {
  let following = null;
  function follow(channel) {
    if (following) following.close();
    $("#following").textContent = channel;
    following = stream("/events/" + encodeURIComponent(channel), (es) => es.addEventListener("message", (e) => {
      const li = document.createElement("li");
      li.textContent = new Date().toLocaleTimeString() + "  " + e.data;
      $("#messages").prepend(li);
    }), (st) => { $("#following").textContent = channel + (st === "live" ? "" : ` (${st})`); });
  }
  follow($("#channel").value);
  $("#channel").addEventListener("change", () => follow($("#channel").value));
  $("#pub").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await post("/pubsub", { channel: $("#channel").value, message: JSON.parse($("#message").value) });
      $("#receivers").textContent = r.receivers;
    } catch (err) { $("#receivers").textContent = "error: " + err.message; }
  });
}

// Each page names itself (<body data-page>): no inline script, so the pages are served with a
// Content-Security-Policy that allows this origin only.
document.addEventListener("DOMContentLoaded", () => {
  const pages = { dashboard: redisqDashboard, prodcons: redisqProdcons, pubsub: redisqPubsub, jobs: redisqJobs, job: redisqJob };
  const start = pages[document.body.dataset.page];
  if (start) start();
});
