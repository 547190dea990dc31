// Ask: a question, its answer streamed as generated, [n] markers that open their passages, Stop.

import { api } from "./api.js";
import { announce, fromTemplate, h, hideError, showError } from "./dom.js";
import { followJob } from "./sse.js";

// "[2]", "[1, 3]", "[1;4]": the markers the service writes, numbered as the cited passages.
const MARKER = /\[(\d{1,4}(?:\s*[,;]\s*\d{1,4})*)\]/g;

export function render(main) {
  main.replaceChildren(fromTemplate("view-ask"));
  const $ = (selector) => main.querySelector(selector);
  const form = $("#ask-form");
  const askButton = $("#ask-button");
  const stopButton = $("#stop-button");
  const status = $("#ask-status");
  const errorBox = $("#ask-error");
  const answer = $("#answer");
  const note = $("#answer-note");
  const citedSection = $("#cited-section");
  const uncitedSection = $("#uncited-section");
  const dialog = $("#passage-dialog");
  let running = null; // {jobId, controller}
  let opener = null;

  function openPassage(passage, label) {
    $("#passage-title").textContent = `${label}${passage.title || passage.document_id}`;
    const parts = [`document ${passage.document_id}`];
    if (passage.page !== null && passage.page !== undefined) parts.push(`page ${passage.page}`);
    if (passage.source) parts.push(passage.source);
    parts.push(`score ${passage.score.toFixed(3)}`);
    $("#passage-meta").textContent = parts.join(" · ");
    $("#passage-text").textContent = passage.text;
    opener = document.activeElement;
    dialog.showModal();
  }
  dialog.addEventListener("close", () => opener?.focus());

  function passageItem(passage, number) {
    const label = number ? `[${number}] ` : "";
    const name = passage.title || passage.document_id;
    const where = passage.page !== null && passage.page !== undefined ? `, page ${passage.page}` : "";
    return h("li", {},
      h("button", {
        type: "button", class: "link",
        "aria-label": `Open ${number ? `source ${number}` : "passage"}: ${name}${where}`,
        onclick: () => openPassage(passage, label),
      }, `${label}${name}${where}`),
      h("span", { class: "muted small" }, ` score ${passage.score.toFixed(3)}`),
      h("p", { class: "excerpt small" }, excerpt(passage.text)));
  }

  function showPassages(passages) {
    // Until the citations arrive, these are what the model was given.
    const cited = passages.filter((p) => p.cited === true);
    const others = passages.filter((p) => p.cited !== true);
    $("#cited").replaceChildren(...cited.map((p, i) => passageItem(p, i + 1)));
    $("#uncited").replaceChildren(...others.map((p) => passageItem(p, 0)));
    citedSection.hidden = !cited.length;
    uncitedSection.hidden = !others.length;
  }

  /** The answer's text with each [n] of a cited passage as a button that opens it. */
  function showAnswer(text, cited) {
    const parts = [];
    let last = 0;
    for (const match of text.matchAll(MARKER)) {
      const numbers = match[1].split(/\s*[,;]\s*/).map(Number);
      if (!numbers.every((n) => n >= 1 && n <= cited.length)) continue;
      parts.push(text.slice(last, match.index));
      for (const n of numbers) {
        const passage = cited[n - 1];
        parts.push(h("button", {
          type: "button", class: "cite", dataset: { n },
          "aria-label": `source ${n}: ${passage.title || passage.document_id}`,
          onclick: () => openPassage(passage, `[${n}] `),
        }, `[${n}]`));
      }
      last = match.index + match[0].length;
    }
    parts.push(text.slice(last));
    answer.replaceChildren(...parts);
  }

  function finished(record, streamed) {
    const result = record.result;
    if (record.status === "succeeded" && result) {
      // The stream and the record must agree; if they do not, the record wins.
      if (result.answer !== streamed) answer.dataset.resynced = "true";
      const cited = result.citations.filter((p) => p.cited === true);
      showAnswer(result.answer, cited);
      showPassages(result.citations);
      const notes = [];
      if (result.finish_reason === "length") notes.push("The answer was cut at the token limit.");
      if (result.grounded === false) notes.push("The documents do not cover this question.");
      note.textContent = notes.join(" ");
      note.hidden = !notes.length;
      status.textContent = "Done.";
    } else if (record.status === "cancelled") {
      status.textContent = "Stopped.";
    } else if (record.error) {
      showError(errorBox, { shown: `${record.error.code}: ${record.error.message}` });
      status.textContent = "Failed.";
    }
    answer.dataset.status = record.status;
  }

  async function run(body) {
    hideError(errorBox);
    answer.replaceChildren();
    delete answer.dataset.status;
    delete answer.dataset.resynced;
    note.hidden = true;
    showPassages([]);
    status.textContent = "Sending…";
    const accepted = await api("/v1/answers", { method: "POST", json: body });
    const controller = new AbortController();
    running = { jobId: accepted.job_id, controller };
    answer.dataset.job = accepted.job_id;
    stopButton.disabled = false;
    status.textContent = "Retrieving passages…";
    let streamed = "";
    let reconnects = 0;
    answer.setAttribute("aria-busy", "true");
    const record = await followJob(accepted.job_id, {
      signal: controller.signal,
      onReconnect: () => {
        reconnects += 1;
        answer.dataset.reconnects = String(reconnects);
        status.textContent = "Connection lost; resuming…";
      },
      onEvent: ({ event, data }) => {
        if (status.textContent.startsWith("Connection lost")) {
          status.textContent = streamed ? "Generating…" : "Retrieving passages…";
        }
        if (event === "passages") {
          showPassages(data);
          status.textContent = "Generating…";
        } else if (event === "token") {
          streamed += data.text;
          answer.append(data.text);
        } else if (event === "citations") {
          showAnswer(streamed, data.filter((p) => p.cited === true));
          showPassages(data);
        } else if (event === "status" && data.status === "running" && !streamed) {
          status.textContent = "Retrieving passages…";
        }
      },
    });
    answer.setAttribute("aria-busy", "false");
    finished(record, streamed);
  }

  async function stop() {
    if (!running) return;
    stopButton.disabled = true;
    status.textContent = "Stopping…";
    try {
      // The stream then brings the cancelled status and the done event.
      await api(`/v1/jobs/${encodeURIComponent(running.jobId)}`, { method: "DELETE" });
    } catch (error) {
      // 409: it finished first; its done event is on the way.
      if (error.status !== 409) showError(errorBox, error);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (running) return;
    const body = { question: $("#question").value, top_k: Number($("#top-k").value) || 5 };
    const mode = $("#mode").value;
    if (mode) body.mode = mode;
    const ids = [...$("#document-filter").selectedOptions].map((option) => option.value);
    if (ids.length) body.filter = { document_ids: ids };
    askButton.disabled = true;
    try {
      await run(body);
    } catch (error) {
      if (error.name !== "AbortError") {
        showError(errorBox, error);
        status.textContent = "";
      }
    } finally {
      answer.setAttribute("aria-busy", "false");
      running = null;
      askButton.disabled = false;
      stopButton.disabled = true;
    }
  });
  stopButton.addEventListener("click", stop);

  api("/v1/documents?limit=1000")
    .then(({ documents }) => {
      const filter = $("#document-filter");
      filter.replaceChildren(...documents
        .filter((doc) => doc.status === "ready")
        .map((doc) => h("option", { value: doc.document_id }, doc.title || doc.document_id)));
    })
    .catch(announce);

  return () => running?.controller.abort();
}

function excerpt(text, length = 220) {
  return text.length <= length ? text : `${text.slice(0, length)}…`;
}
