// The demo page's Dashboard tab: many job streams on one connection (GET /v1/events?prefix=),
// followed with the client package's followEvents, which resumes every job's position by
// itself after a dropped connection (one Last-Event-ID holds them all) and gives each
// event once. Every job is a stream of its own, its progress published by this page as a
// job's worker would; the jobs started later are under the same prefix, so followed too.

import { followEvents } from "@llm-stream-broadcaster/client";

const STEPS = 20; // progress events per job, then its finish
const STEP_MS = 300;
const RETRY_MS = 500;
const FIRST_JOBS = 12;
const MORE_JOBS = 4;

// Appends the job's event number `seq` only if the stream holds seq - 1 events, so a
// retried publish never appends twice: when the attempt that failed had landed (the
// front-end died before answering), the retry's 409 says the stream is at seq.
async function publish(stream, event, seq) {
  const url = `/v1/streams/${encodeURIComponent(stream)}/events?expected_last_event_id=${seq - 1}`;
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(event),
  });
  if (res.ok) return;
  const body = await res.json().catch(() => ({}));
  const landed = body.error === "conflict" || body.error === "ended";
  if (res.status === 409 && landed && body.last_event_id === seq) return;
  throw new Error(`publish: HTTP ${res.status}${body.error ? ` ${body.error}` : ""}`);
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Dashboard {
  constructor(tab) {
    this.tab = tab;
    this.jobsEl = tab.querySelector("#dash-jobs");
    this.connEl = tab.querySelector("#dash-conn");
    this.countEl = tab.querySelector("#dash-count");
    this.errorEl = tab.querySelector("#dash-error");
    this.moreBtn = tab.querySelector("#dash-more");
    // What the page received, per stream, for tests: seqs in arrival order.
    this.state = window.__dashboard = { prefix: null, seqs: {}, opens: 0, errors: 0, jobs: 0, finished: 0 };
    this.rows = new Map();
    this.next = 0;
    this.controller = new AbortController();
    this.done = null; // the connection's loop, once started
    const startBtn = tab.querySelector("#dash-start");
    startBtn.addEventListener("click", () => {
      startBtn.disabled = true;
      this.state.prefix = `demo-jobs-${Math.random().toString(36).slice(2, 8)}-`;
      this.start(FIRST_JOBS);
      // Some jobs exist first, the next ones are created after the connection.
      setTimeout(() => (this.done = this.follow()), 200);
      this.moreBtn.disabled = false;
    });
    this.moreBtn.addEventListener("click", () => this.start(MORE_JOBS));
  }

  // The package's fetch, watched: each request after the first is a reconnection, each
  // 200 a connection opened. What the page shows of the connection comes from these.
  watchedFetch() {
    let requests = 0;
    return async (input, init) => {
      if (requests++ > 0) {
        this.state.errors++;
        this.connEl.textContent = "reconnecting (it resumes every job where it was)…";
      }
      const res = await fetch(input, init);
      if (res.ok) {
        const opens = ++this.state.opens;
        this.connEl.textContent = `1 connection (opened ${opens} time${opens > 1 ? "s" : ""})`;
      }
      return res;
    };
  }

  async follow() {
    const options = { signal: this.controller.signal, fetch: this.watchedFetch() };
    try {
      for await (const e of followEvents("/v1/events", { prefix: this.state.prefix }, options)) {
        this.show(e.stream, e.seq, e.type, e.data);
      }
    } catch (err) {
      if (this.controller.signal.aborted) return;
      this.connEl.textContent = "closed";
      this.errorEl.textContent = String(err.message || err);
    }
  }

  row(stream) {
    let r = this.rows.get(stream);
    if (r) return r;
    r = document.createElement("div");
    r.className = "job";
    r.dataset.stream = stream;
    const name = document.createElement("code");
    name.textContent = stream.slice(this.state.prefix.length);
    const label = document.createElement("span");
    label.className = "job-state";
    label.textContent = "…";
    const line = document.createElement("div");
    line.append(name, " ", label);
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    r.append(line, bar);
    this.jobsEl.appendChild(r);
    this.rows.set(stream, r);
    this.countEl.textContent = `${this.rows.size} jobs`;
    return r;
  }

  show(stream, seq, type, event) {
    (this.state.seqs[stream] ??= []).push(seq);
    const r = this.row(stream);
    const label = r.querySelector(".job-state");
    if (type === "data-progress") {
      r.querySelector("progress").value = event.data.pct;
      label.textContent = `${event.data.pct}%`;
    } else {
      r.dataset.state = type;
      label.textContent = type === "finish" ? "done" : type;
      if (type === "finish") this.state.finished++;
    }
  }

  // A job's "worker": its progress, then finish; a failed publish (a front-end gone:
  // nginx sends the retry to another) is tried again, and lands once.
  async runJob(stream) {
    this.state.jobs++;
    for (let step = 1; step <= STEPS + 1; ) {
      const event = step > STEPS ? { type: "finish" } : { type: "data-progress", data: { pct: (step * 100) / STEPS } };
      try {
        await publish(stream, event, step);
      } catch (err) {
        this.errorEl.textContent = `${err.message || err} (retrying)`;
        await pause(RETRY_MS);
        continue;
      }
      step++;
      if (step <= STEPS + 1) await pause(STEP_MS * (0.5 + Math.random()));
    }
  }

  start(n) {
    for (let i = 0; i < n; i++) this.runJob(this.state.prefix + String(this.next++).padStart(3, "0"));
  }
}
