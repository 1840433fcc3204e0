// redisq front end: plain JS, no build step, nothing loaded from elsewhere.
// Writes send the token (if one is set in the header field) as a bearer token.
"use strict";
const $ = (sel) => document.querySelector(sel);
const TOKEN_KEY = "redisq-token";

document.addEventListener("DOMContentLoaded", () => {
  const t = $("#token"); if (!t) return;
  t.value = sessionStorage.getItem(TOKEN_KEY) || "";
  t.addEventListener("change", () => sessionStorage.setItem(TOKEN_KEY, t.value));
});

async function post(url, body) {
  const headers = { "Content-Type": "application/json" };
  const token = ($("#token") && $("#token").value) || sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const res = await fetch(url, { method: "POST", headers, body: JSON.stringify(body === undefined ? {} : body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}
function esc(v) { return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c])); }
function rows(table, items, render, empty) {
  const body = $(table + " tbody");
  body.innerHTML = items.length ? items.map(render).join("")
    : `<tr><td colspan="9" class="muted">${esc(empty)}</td></tr>`;
  fillBars(body);
}
function ago(ts) {
  if (!ts) return "";
  const s = Math.max(0, Date.now() / 1000 - ts);
  return s < 60 ? s.toFixed(0) + " s ago" : s < 3600 ? (s / 60).toFixed(0) + " min ago" : (s / 3600).toFixed(1) + " h ago";
}
function bar(fraction) {
  const pct = (Math.max(0, Math.min(1, fraction || 0)) * 100).toFixed(0);
  return `<span class="bar" role="progressbar" aria-valuenow="${pct}"><span></span></span> ${pct}%`;
}
// Widths are set through the DOM, not style="" in markup: the CSP allows no inline styles.
function fillBars(root) {
  for (const el of root.querySelectorAll(".bar[aria-valuenow]")) el.firstElementChild.style.width = el.getAttribute("aria-valuenow") + "%";
}
const FINAL = ["succeeded", "dead", "failed", "cancelled"];

function redisqDashboard() {
  const jobs = new Map();  // the jobs this page enqueued, newest last
  function renderJobs() {
    rows("#jobs", [...jobs.values()].reverse(), (j) =>
      `<tr data-job="${esc(j.id)}"><td><code title="${esc(j.id)}">${esc(j.id.slice(0, 8))}</code></td><td>${esc(j.task)}</td>` +
      `<td class="status status-${esc(j.status)}">${esc(j.status)}</td>` +
      `<td>${j.status === "started" && j.progress !== undefined ? bar(j.progress) + " " : ""}${esc(j.detail || "")}</td>` +
      `<td>${j.status === "queued" ? `<button data-cancel="${esc(j.id)}">cancel</button>` : ""}</td></tr>`,
    "nothing enqueued from this page yet");
  }
  async function refreshJob(id) {
    const res = await fetch("/jobs/" + encodeURIComponent(id)); if (!res.ok) return;
    const j = await res.json();
    const detail = j.status === "succeeded" ? JSON.stringify(j.result)
      : j.error_message ? `${j.error_type || "error"}: ${j.error_message}` : (j.progress_message || "");
    jobs.set(id, { id, task: j.task, status: j.status, progress: j.progress, detail });
    renderJobs();
  }
  function renderSnapshot(s) {
    rows("#queues", Object.entries(s.queues), ([q, c]) =>
      `<tr><td>${esc(q)}</td><td>${c.depth}</td><td>${c.in_flight}</td><td>${c.delayed}</td><td>${c.dead_letters}</td>` +
      `<td>${c.succeeded || 0}</td><td>${c.rate}</td><td class="actions"><button data-act="requeue" data-q="${esc(q)}">retry dead</button> ` +
      `<button data-act="purge" data-q="${esc(q)}">purge</button></td></tr>`, "no queues yet");
    rows("#workers", s.workers, (w) =>
      `<tr><td>${esc(w.id)}</td><td>${esc(w.mode)}</td><td>${esc((w.queues || w.channels || []).join(", "))}</td>` +
      `<td>${w.processed || 0}</td><td>${w.failed || 0}</td><td>${s.running.filter((j) => j.worker === w.id).length}</td><td>${ago(w.last_seen)}</td></tr>`,
    "no live worker: start one with  redisq worker --app webapp.tasks:app");
    rows("#failures", s.failures, (f) =>
      `<tr><td>${ago(f.failed_at)}</td><td>${esc(f.queue)}</td><td>${esc(f.task)}</td>` +
      `<td class="error">${esc(f.error_type)}: ${esc(f.reason)}</td><td>${f.job_id ? `<code>${esc(f.job_id.slice(0, 8))}</code>` : ""}</td></tr>`,
    "no failures");
    rows("#running", s.running, (j) =>
      `<tr data-running="${esc(j.id)}"><td>${esc(j.task)}</td><td><code>${esc(j.id.slice(0, 8))}</code></td>` +
      `<td class="progress">${bar(j.progress)}</td><td class="progress-msg">${esc(j.progress_message)}</td><td>${esc(j.worker)}</td></tr>`,
    "nothing running");
    $("#scheduled").innerHTML = (s.scheduled || []).length ? s.scheduled.map((p) =>
      `<div><strong>${esc(p.name)}</strong> ${esc(p.schedule || "")} — next ${p.next_at ? esc(new Date(p.next_at * 1000).toLocaleTimeString()) + ` (in ${Math.max(0, p.next_at - Date.now() / 1000).toFixed(0)} s)` : "?"}</div>`).join("")
      : "no periodic jobs";
  }
  function setLive(text, on) { $("#live").textContent = text; $("#live").classList.toggle("on", on); }
  const es = new EventSource("/events");
  es.addEventListener("open", () => setLive("live", true));
  es.addEventListener("error", () => setLive("reconnecting…", false));
  es.addEventListener("redis", () => setLive("redis unreachable, retrying…", false));
  es.addEventListener("snapshot", (e) => { setLive("live", true); renderSnapshot(JSON.parse(e.data)); });
  es.addEventListener("job", (e) => {
    const ev = JSON.parse(e.data);
    if (ev.id && jobs.has(ev.id)) refreshJob(ev.id);
  });
  es.addEventListener("progress", (e) => {  // move the bars between snapshots
    const ev = JSON.parse(e.data);
    const row = document.querySelector(`tr[data-running="${CSS.escape(ev.id)}"]`);
    if (row) {
      row.querySelector(".progress").innerHTML = bar(ev.progress); fillBars(row);
      row.querySelector(".progress-msg").textContent = ev.message || "";
    }
    const j = jobs.get(ev.id);
    if (j && !FINAL.includes(j.status)) { Object.assign(j, { status: "started", progress: ev.progress, detail: ev.message || "" }); renderJobs(); }
  });
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
  let es = null;
  function follow(channel) {
    if (es) es.close();
    $("#following").textContent = channel;
    es = new EventSource("/events/" + encodeURIComponent(channel));
    es.addEventListener("message", (e) => {
      const li = document.createElement("li");
      li.textContent = new Date().toLocaleTimeString() + "  " + e.data;
      $("#messages").prepend(li);
    });
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
  const pages = { dashboard: redisqDashboard, prodcons: redisqProdcons, pubsub: redisqPubsub };
  const start = pages[document.body.dataset.page];
  if (start) start();
});
