// Documents: drag-and-drop upload with one bar per file fed by its job's progress, and the
// tenant's documents with delete and re-index.

import { api, upload } from "./api.js";
import { announce, badge, bytes, fromTemplate, h, when } from "./dom.js";

const PAGE = 100;
const PARALLEL_UPLOADS = 3;
const POLL_MS = 700;
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const SETTLED = new Set(["ready", "failed"]);

/** Every file of a drop, folders walked; each as [file, path within the drop]. */
async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items]
    .filter((item) => item.kind === "file")
    .map((item) => item.webkitGetAsEntry?.())
    .filter(Boolean);
  if (!entries.length) return [...dataTransfer.files].map((file) => [file, file.name]);
  const found = [];
  async function walk(entry) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      found.push([file, entry.fullPath.replace(/^\//, "")]);
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      // readEntries answers in pages until it answers an empty one.
      for (;;) {
        const page = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!page.length) break;
        for (const child of page) await walk(child);
      }
    }
  }
  for (const entry of entries) await walk(entry);
  return found;
}

export function render(main) {
  main.replaceChildren(fromTemplate("view-documents"));
  const dropzone = main.querySelector("#dropzone");
  const uploads = main.querySelector("#uploads");
  const tbody = main.querySelector("#documents-table tbody");
  const total = main.querySelector("#documents-total");
  const empty = main.querySelector("#documents-empty");
  const more = main.querySelector("#documents-more");
  let alive = true;
  let shown = PAGE;
  const tracked = new Map(); // job id -> upload item
  const waiting = []; // [file, path, item] not sent yet
  let sending = 0;
  let pollTimer = null;

  function uploadItem(name) {
    const bar = h("progress", { max: 1, value: 0, "aria-label": `${name}` });
    const state = h("span", { class: "state" }, "waiting");
    const item = h("li", { class: "upload", dataset: { state: "waiting", name } },
      h("span", { class: "name" }, name), bar, state);
    uploads.append(item);
    return { item, bar, state, name };
  }

  const announced = main.querySelector("#uploads-status");
  function setState(entry, state, text, fraction) {
    if (["ready", "failed", "cancelled"].includes(state) && entry.item.dataset.state !== state) {
      // Screen readers hear each file as it ends, not every step of every bar.
      announced.textContent = `${entry.name}: ${text}`;
    }
    entry.item.dataset.state = state;
    entry.state.textContent = text;
    if (fraction === null) entry.bar.removeAttribute("value");
    else if (fraction !== undefined) entry.bar.value = fraction;
  }

  function enqueue(files) {
    for (const [file, path] of files) waiting.push([file, path, uploadItem(path)]);
    pump();
  }

  function pump() {
    while (alive && sending < PARALLEL_UPLOADS && waiting.length) {
      const [file, path, entry] = waiting.shift();
      sending += 1;
      send(file, path, entry).finally(() => {
        sending -= 1;
        pump();
      });
    }
  }

  async function send(file, path, entry) {
    const form = new FormData();
    form.append("file", file, file.name);
    if (path !== file.name) form.append("title", path);
    setState(entry, "uploading", "uploading", 0);
    try {
      const accepted = await upload("/v1/documents", form, (fraction) =>
        setState(entry, "uploading", `uploading ${Math.round(fraction * 100)} %`, fraction * 0.1),
      );
      entry.jobId = accepted.job_id;
      entry.documentId = accepted.document_id;
      entry.item.dataset.job = accepted.job_id;
      entry.item.dataset.document = accepted.document_id;
      setState(entry, "queued", "queued", null);
      tracked.set(accepted.job_id, entry);
      schedulePoll(0);
    } catch (error) {
      setState(entry, "failed", error.shown ?? String(error), 0);
    }
  }

  function schedulePoll(delay = POLL_MS) {
    if (!alive || pollTimer !== null) return;
    pollTimer = setTimeout(async () => {
      pollTimer = null;
      try {
        await poll();
      } catch (error) {
        announce(error);
      }
      if (tracked.size) schedulePoll();
    }, delay);
  }

  async function poll() {
    if (!tracked.size) return;
    // One request follows every recent ingest job; older ones are read one by one.
    const { jobs } = await api("/v1/jobs?kind=ingest&limit=200");
    const records = new Map(jobs.map((job) => [job.job_id, job]));
    for (const [jobId, entry] of [...tracked]) {
      try {
        const record = records.get(jobId) ?? (await api(`/v1/jobs/${encodeURIComponent(jobId)}`));
        await show(entry, record);
      } catch (error) {
        if (error.status === 401) throw error;
        // This file's job or document is gone (expired, deleted): its bar says so and stops.
        tracked.delete(jobId);
        setState(entry, "failed", error.shown ?? String(error), 0);
      }
    }
  }

  async function show(entry, record) {
    const { done, total: all } = record.progress;
    if (record.status === "queued") setState(entry, "queued", "queued", null);
    else if (record.status === "running") {
      const text = all ? `ingesting: ${done} of ${all} chunks` : "parsing";
      setState(entry, "ingesting", text, all ? 0.1 + (0.9 * done) / all : null);
    } else if (record.status === "succeeded") {
      tracked.delete(record.job_id);
      // The job's end, then the document's own status (ready once its version is committed).
      const doc = await api(`/v1/documents/${encodeURIComponent(record.document_id)}`);
      setState(entry, doc.status, `${doc.status}: ${doc.chunks} chunks`, 1);
      refreshSoon();
    } else if (FINISHED.has(record.status)) {
      tracked.delete(record.job_id);
      const error = record.error;
      const text = error ? `${error.code}: ${error.message}` : record.status;
      setState(entry, record.status === "failed" ? "failed" : "cancelled", text, 0);
      refreshSoon();
    }
  }

  let refreshTimer = null;
  function refreshSoon(delay = 300) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => refresh().catch(announce), delay);
  }

  async function refresh() {
    if (!alive) return;
    const page = await api(`/v1/documents?limit=${shown}`);
    total.textContent = `(${page.total})`;
    empty.hidden = page.total > 0;
    more.hidden = page.total <= page.documents.length;
    tbody.replaceChildren(...page.documents.map(row));
    // Documents still changing are shown again shortly.
    if (page.documents.some((doc) => !SETTLED.has(doc.status))) refreshSoon(1500);
  }

  function row(doc) {
    const title = h("td", {}, h("span", { class: "title" }, doc.title || doc.document_id));
    if (doc.status === "failed" || doc.error) {
      const problem = h("p", { class: "error small" }, doc.error ?? "failed");
      title.append(problem);
      // The registry keeps the error code; the job that failed has its message.
      api(`/v1/jobs/${encodeURIComponent(doc.job_id)}`)
        .then((job) => {
          if (job.error) problem.textContent = `${job.error.code}: ${job.error.message}`;
        })
        .catch(() => {});
    }
    const name = doc.title || doc.document_id;
    const reindex = h("button", {
      type: "button", class: "quiet", disabled: doc.status !== "ready",
      "aria-label": `Re-index ${name}`,
      onclick: () => act(`/v1/documents/${encodeURIComponent(doc.document_id)}:reindex`, "POST"),
    }, "Re-index");
    const remove = h("button", {
      type: "button", class: "quiet danger", disabled: doc.status === "deleting",
      "aria-label": `Delete ${name}`,
      onclick: () => {
        if (confirm(`Delete "${name}"? Its chunks leave the index.`)) {
          act(`/v1/documents/${encodeURIComponent(doc.document_id)}`, "DELETE");
        }
      },
    }, "Delete");
    return h("tr", { dataset: { document: doc.document_id, status: doc.status } },
      title,
      h("td", {}, badge(doc.status)),
      h("td", { class: "number" }, doc.chunks),
      h("td", { class: "number" }, bytes(doc.size_bytes)),
      h("td", {}, when(doc.updated_at)),
      h("td", { class: "actions" }, reindex, remove));
  }

  async function act(path, method) {
    try {
      await api(path, { method });
    } catch (error) {
      announce(error);
    }
    refreshSoon(0);
  }

  dropzone.addEventListener("dragover", (event) => {
    event.preventDefault();
    dropzone.classList.add("over");
  });
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
  dropzone.addEventListener("drop", async (event) => {
    event.preventDefault();
    dropzone.classList.remove("over");
    enqueue(await droppedFiles(event.dataTransfer));
  });
  for (const input of main.querySelectorAll("input[type=file]")) {
    input.addEventListener("change", () => {
      enqueue([...input.files].map((file) => [file, file.webkitRelativePath || file.name]));
      input.value = "";
    });
  }
  main.querySelector("#documents-refresh").addEventListener("click", () => refreshSoon(0));
  more.addEventListener("click", () => {
    shown += PAGE;
    refreshSoon(0);
  });
  refresh().catch(announce);

  return () => {
    alive = false;
    clearTimeout(pollTimer);
    clearTimeout(refreshTimer);
  };
}
