// redisq front end: plain JS, no build step. Writes send the token (if set) as a bearer token.
"use strict";
const $ = (sel) => document.querySelector(sel);
const tokenInput = () => $("#token");
document.addEventListener("DOMContentLoaded", () => {
  const t = tokenInput(); if (!t) return;
  t.value = localStorage.getItem("redisq-token") || "";
  t.addEventListener("change", () => localStorage.setItem("redisq-token", t.value));
});
async function post(url, body) {
  const headers = { "Content-Type": "application/json" };
  const token = localStorage.getItem("redisq-token") || (tokenInput() && tokenInput().value);
  if (token) headers.Authorization = "Bearer " + token;
  const res = await fetch(url, { method: "POST", headers, body: body === undefined ? "{}" : JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}
function esc(v) { return String(v ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }
function rows(table, items, render) { $(table + " tbody").innerHTML = items.map(render).join(""); }
function ago(ts) { if (!ts) return ""; const s = Date.now() / 1000 - ts; return s < 60 ? s.toFixed(0) + " s ago" : (s / 60).toFixed(0) + " min ago"; }

function redisqDashboard() {
  const jobs = new Map();
  function renderJobs() {
    rows("#jobs", [...jobs.values()].reverse(), (j) =>
      `<tr data-job="${esc(j.id)}"><td><code>${esc(j.id.slice(0, 8))}</code></td><td>${esc(j.task)}</td>` +
      `<td class="status status-${esc(j.status)}">${esc(j.status)}</td><td>${esc(j.detail || "")}</td></tr>`);
  }
  async function refreshJob(id) {
    const res = await fetch("/jobs/" + id); if (!res.ok) return;
    const j = await res.json();
    jobs.set(id, { id, task: j.task, status: j.status,
      detail: j.status === "succeeded" ? JSON.stringify(j.result) : (j.error_message || j.progress_message || "") });
    renderJobs();
  }
  function renderSnapshot(s) {
    rows("#queues", Object.entries(s.queues), ([q, c]) =>
      `<tr><td>${esc(q)}</td><td>${c.depth}</td><td>${c.in_flight}</td><td>${c.delayed}</td><td>${c.dead_letters}</td>` +
      `<td>${c.succeeded || 0}</td><td>${c.rate}</td><td><button data-act="requeue" data-q="${esc(q)}">retry dead</button> ` +
      `<button data-act="purge" data-q="${esc(q)}">purge</button></td></tr>`);
    rows("#workers", s.workers, (w) =>
      `<tr><td>${esc(w.id)}</td><td>${esc(w.mode)}</td><td>${esc((w.queues || w.channels || []).join(", "))}</td>` +
      `<td>${w.processed || 0}</td><td>${w.failed || 0}</td><td>${(w.current || []).length}</td><td>${ago(w.last_seen)}</td></tr>`);
    rows("#failures", s.failures, (f) =>
      `<tr><td>${ago(f.failed_at)}</td><td>${esc(f.queue)}</td><td>${esc(f.task)}</td>` +
      `<td>${esc(f.error_type)}: ${esc(f.reason)}</td><td>${f.job_id ? `<code>${esc(f.job_id.slice(0, 8))}</code>` : ""}</td></tr>`);
    $("#running").innerHTML = s.running.length ? s.running.map((j) =>
      `<div>${esc(j.task)} <code>${esc(j.id.slice(0, 8))}</code> <span class="bar"><span style="width:${(j.progress * 100).toFixed(0)}%"></span></span> ` +
      `${(j.progress * 100).toFixed(0)}% ${esc(j.progress_message)}</div>`).join("") : "nothing running";
    $("#scheduled").innerHTML = (s.scheduled || []).length ? s.scheduled.map((p) =>
      `<div>${esc(p.name)} — next ${esc(p.next_at_iso || p.next_at)}</div>`).join("") : "no periodic jobs";
  }
  const es = new EventSource("/events");
  es.addEventListener("open", () => { $("#live").textContent = "live"; $("#live").classList.add("on"); });
  es.addEventListener("error", () => { $("#live").textContent = "reconnecting…"; $("#live").classList.remove("on"); });
  es.addEventListener("snapshot", (e) => renderSnapshot(JSON.parse(e.data)));
  es.addEventListener("job", (e) => { const ev = JSON.parse(e.data); if (ev.id && jobs.has(ev.id)) refreshJob(ev.id); });
  $("#enqueue").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await post("/prodcons", { task: $("#task").value, args: JSON.parse($("#args").value || "[]") });
      jobs.set(r.job_id, { id: r.job_id, task: $("#task").value, status: "queued" }); renderJobs();
      $("#enqueue-msg").textContent = "queued " + r.job_id; refreshJob(r.job_id);
    } catch (err) { $("#enqueue-msg").textContent = "error: " + err.message; }
  });
  document.body.addEventListener("click", async (e) => {
    const b = e.target.closest("button[data-act]"); if (!b) return;
    try { await post(`/queues/${encodeURIComponent(b.dataset.q)}/${b.dataset.act}`); } catch (err) { alert(err.message); }
  });
}

function redisqProdcons() {
  $("#add").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await post("/prodcons", { task: "demo.add", args: [Number($("#a").value), Number($("#b").value)] });
    $("#job-id").textContent = r.job_id;
    for (let i = 0; i < 600; i++) {
      const j = await (await fetch(r.status_url)).json();
      $("#job-status").textContent = j.status;
      if (j.status === "succeeded") { $("#job-result").textContent = JSON.stringify(j.result); return; }
      if (["dead", "failed", "cancelled"].includes(j.status)) { $("#job-result").textContent = j.error_message || j.status; return; }
      await new Promise((ok) => setTimeout(ok, 100));
    }
  });
}

function redisqPubsub() {
  let es = null;
  function follow(channel) {
    if (es) es.close();
    es = new EventSource("/events/" + encodeURIComponent(channel));
    es.addEventListener("message", (e) => {
      const li = document.createElement("li"); li.textContent = new Date().toLocaleTimeString() + "  " + e.data;
      $("#messages").prepend(li);
    });
  }
  follow($("#channel").value);
  $("#channel").addEventListener("change", () => follow($("#channel").value));
  $("#pub").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await post("/pubsub", { channel: $("#channel").value, message: JSON.parse($("#message").value) });
    $("#receivers").textContent = r.receivers;
  });
}
