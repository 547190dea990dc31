// Jobs: the tenant's recent jobs, and one job's events, result or error, and webhook deliveries.

import { api } from "./api.js";
import { announce, badge, fromTemplate, h, hideError, seconds, showError, when } from "./dom.js";
import { followJob } from "./sse.js";

export function render(main, [jobId]) {
  return jobId ? detail(main, jobId) : list(main);
}

function list(main) {
  main.replaceChildren(fromTemplate("view-jobs"));
  const tbody = main.querySelector("#jobs-table tbody");
  const more = main.querySelector("#jobs-more");
  const empty = main.querySelector("#jobs-empty");
  const filter = main.querySelector("#jobs-filter");
  let cursor = null;
  let timer = null;

  async function load(append) {
    clearTimeout(timer);
    const query = new URLSearchParams({ limit: "50" });
    for (const name of ["kind", "status"]) {
      const value = filter.elements[name].value;
      if (value) query.set(name, value);
    }
    if (append && cursor) query.set("cursor", cursor);
    const page = await api(`/v1/jobs?${query}`);
    cursor = page.next_cursor;
    const rows = page.jobs.map(row);
    if (append) tbody.append(...rows);
    else tbody.replaceChildren(...rows);
    empty.hidden = tbody.children.length > 0;
    more.hidden = !cursor;
    // While the first page has jobs in flight, it is shown again every few seconds.
    const active = page.jobs.some((job) => job.status === "queued" || job.status === "running");
    if (!append && active) timer = setTimeout(() => load(false).catch(announce), 3000);
  }

  function row(job) {
    return h("tr", { dataset: { job: job.job_id, status: job.status } },
      h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.job_id)}` },
        h("code", {}, job.job_id.slice(0, 8)),
        h("span", { class: "visually-hidden" }, ` (${job.kind} job)`))),
      h("td", {}, job.kind),
      h("td", {}, badge(job.status)),
      h("td", { class: "number" }, job.attempts),
      h("td", { class: "number" }, seconds(job.started_at ?? job.created_at, job.finished_at)),
      h("td", {}, when(job.created_at)));
  }

  filter.addEventListener("submit", (event) => {
    event.preventDefault();
    load(false).catch(announce);
  });
  more.addEventListener("click", () => load(true).catch(announce));
  load(false).catch(announce);
  return () => clearTimeout(timer);
}

const FIELDS = [
  ["kind", "Kind"], ["status", "Status"], ["document_id", "Document"], ["attempts", "Attempts"],
  ["worker", "Worker"], ["created_at", "Created"], ["started_at", "Started"],
  ["finished_at", "Finished"], ["webhook_url", "Webhook"],
];

function detail(main, jobId) {
  main.replaceChildren(fromTemplate("view-job"));
  const $ = (selector) => main.querySelector(selector);
  $("#job-id").textContent = jobId;
  const controller = new AbortController();
  const timeline = $("#timeline");
  let deliveryTimer = null;
  let tokens = null; // the timeline entry that counts token events

  function showRecord(job) {
    const items = [];
    for (const [key, label] of FIELDS) {
      let value = job[key];
      if (value === null || value === undefined) continue;
      if (key === "status") value = badge(value);
      else if (key.endsWith("_at")) value = when(value);
      items.push(h("dt", {}, label), h("dd", {}, value));
    }
    const { done, total } = job.progress;
    if (total) items.push(h("dt", {}, "Progress"), h("dd", {}, `${done} of ${total}`));
    items.push(h("dt", {}, "Duration"),
      h("dd", {}, seconds(job.started_at ?? job.created_at, job.finished_at)));
    $("#job-fields").replaceChildren(...items);
    const error = $("#job-error");
    if (job.error) showError(error, { shown: `${job.error.code}: ${job.error.message}` });
    else hideError(error);
    if (job.result) {
      $("#job-result").replaceChildren(...resultItems(job.result));
      $("#job-result-section").hidden = false;
    }
  }

  function addEvent({ id, event, data }) {
    if (event === "token") {
      // Tokens would flood the timeline: one entry counts them.
      if (!tokens) {
        tokens = { count: 0, text: h("span") };
        timeline.append(entry(id, "token", tokens.text));
      }
      tokens.count += 1;
      tokens.text.textContent = `${tokens.count} token events`;
      return;
    }
    let text;
    if (event === "status") text = data.status;
    else if (event === "progress") text = `${data.done} of ${data.total}`;
    else if (event === "error") text = `${data.code}: ${data.message}`;
    else if (event === "passages" || event === "citations") text = `${data.length} passages`;
    else if (event === "done") text = `final status ${data.status}`;
    else text = "";
    timeline.append(entry(id, event, text));
  }

  async function loadDeliveries() {
    clearTimeout(deliveryTimer);
    const log = await api(`/v1/jobs/${encodeURIComponent(jobId)}/deliveries`);
    const summary = $("#deliveries-summary");
    const table = $("#deliveries-table");
    if (!log.webhook_url) {
      summary.textContent = "This job has no webhook.";
      table.hidden = true;
      return;
    }
    const next = log.next_attempt_at ? `; next attempt ${new Date(log.next_attempt_at).toLocaleString()}` : "";
    summary.textContent = `${log.webhook_url}: ${log.state ?? "pending"}${next}`;
    summary.dataset.state = log.state ?? "pending";
    table.hidden = !log.deliveries.length;
    table.querySelector("tbody").replaceChildren(...log.deliveries.map((attempt) =>
      h("tr", { dataset: { attempt: attempt.attempt, outcome: attempt.outcome } },
        h("td", { class: "number" }, attempt.attempt, attempt.manual ? " (manual)" : ""),
        h("td", {}, when(attempt.at)),
        h("td", {}, badge(attempt.outcome)),
        h("td", {}, attempt.status_code !== null ? `HTTP ${attempt.status_code}` : attempt.error ?? "—"),
        h("td", { class: "number" }, `${attempt.duration_s.toFixed(2)} s`),
        h("td", {}, when(attempt.next_attempt_at)),
        h("td", {}, h("button", {
          type: "button", class: "quiet",
          "aria-label": `Redeliver attempt ${attempt.attempt}`,
          onclick: (event) => redeliver(attempt.attempt, event.currentTarget),
        }, "Redeliver")))));
    // While a delivery is still to come, keep the log current.
    if (log.state === "pending" || log.next_attempt_at) {
      deliveryTimer = setTimeout(() => loadDeliveries().catch(announce), 1000);
    }
  }

  async function redeliver(attempt, button) {
    button.disabled = true;
    try {
      await api(`/v1/jobs/${encodeURIComponent(jobId)}/deliveries/${attempt}:redeliver`,
        { method: "POST" });
    } catch (error) {
      announce(error);
    }
    await loadDeliveries().catch(announce);
    // The redelivery runs in a worker: look again until it is logged.
    deliveryTimer = setTimeout(() => loadDeliveries().catch(announce), 1000);
  }

  async function load() {
    showRecord(await api(`/v1/jobs/${encodeURIComponent(jobId)}`));
    await loadDeliveries().catch(announce);
    const final = await followJob(jobId, { signal: controller.signal, onEvent: addEvent });
    showRecord(final);
    await loadDeliveries();
  }

  load().catch((error) => {
    if (error.name !== "AbortError") showError($("#job-error"), error);
  });
  return () => {
    controller.abort();
    clearTimeout(deliveryTimer);
  };
}

function entry(id, event, text) {
  const at = id ? new Date(Number(id.split("-")[0])) : null;
  return h("li", { dataset: { event } },
    at ? h("time", { datetime: at.toISOString() }, at.toLocaleTimeString()) : "",
    h("strong", {}, ` ${event} `),
    text);
}

/** A job's result as terms and values; an answer's text and passages read as text. */
function resultItems(result) {
  const items = [];
  for (const [key, value] of Object.entries(result)) {
    let shown;
    if (key === "citations" && Array.isArray(value)) {
      shown = h("ol", {}, ...value.map((p) =>
        h("li", {}, `${p.title || p.document_id} (score ${p.score.toFixed(3)}${p.cited ? ", cited" : ""})`)));
    } else if (value !== null && typeof value === "object") {
      shown = Object.entries(value).map(([k, v]) => `${k} ${v}`).join(", ");
    } else {
      shown = value === null ? "—" : String(value);
    }
    items.push(h("dt", {}, key.replaceAll("_", " ")), h("dd", {}, shown));
  }
  return items;
}
