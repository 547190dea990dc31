// A job's Server-Sent Events over fetch(), since EventSource cannot send the Authorization
// header. A dropped connection is resumed with Last-Event-ID, so no event is lost or repeated.

import { ApiError, authHeaders, errorOf } from "./api.js";

/** An incremental text/event-stream parser (the HTML standard's rules); calls onEvent. */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.data = [];
    this.event = "";
    this.pendingId = null;
    // The id of the last event dispatched: what a reconnection asks to resume after.
    this.lastEventId = null;
  }

  feed(text) {
    this.buffer += text;
    const breaks = /\r\n|\r|\n/g;
    let start = 0;
    let match;
    while ((match = breaks.exec(this.buffer)) !== null) {
      // A lone \r at the end may be the first half of \r\n: wait for the next chunk.
      if (match[0] === "\r" && match.index === this.buffer.length - 1) break;
      this.line(this.buffer.slice(start, match.index));
      start = breaks.lastIndex;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      if (this.pendingId !== null) this.lastEventId = this.pendingId;
      if (this.data.length) {
        const event = { id: this.lastEventId, event: this.event || "message" };
        event.data = this.data.join("\n");
        this.onEvent(event);
      }
      this.data = [];
      this.event = "";
      return;
    }
    if (line.startsWith(":")) return; // a comment: the server's keep-alive ping
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.pendingId = value;
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });

/**
 * Follow /v1/jobs/{id}/events until its `done` event, reconnecting after a drop.
 * onEvent gets {id, event, data} with data parsed from JSON; onReconnect(attempt) is told of
 * each reconnection. Resolves with the done event's data; rejects with an ApiError for an
 * error answer, or an AbortError when the signal aborts.
 */
export async function followJob(jobId, { onEvent, onReconnect, signal, lastEventId = null }) {
  let failures = 0;
  let done = null;
  while (done === null) {
    const parser = new SseParser((event) => {
      const parsed = { ...event, data: JSON.parse(event.data) };
      if (parsed.event === "done") done = parsed.data;
      onEvent(parsed);
    });
    parser.lastEventId = lastEventId;
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (lastEventId) headers.set("Last-Event-ID", lastEventId);
    try {
      const response = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events`, {
        headers,
        signal,
        cache: "no-store",
      });
      if (!response.ok) {
        const error = await errorOf(response);
        // Only a busy or briefly unavailable server is worth asking again.
        if (![429, 502, 503, 504].includes(response.status)) throw error;
        throw Object.assign(error, { retry: true });
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done: ended } = await reader.read();
        if (ended) break;
        parser.feed(value);
        if (done !== null) {
          reader.cancel().catch(() => {});
          break;
        }
      }
    } catch (error) {
      if (error.name === "AbortError" || signal?.aborted) throw error;
      if (error instanceof ApiError && !error.retry) throw error;
    }
    // A connection that brought nothing new counts towards giving up; one that did resets it.
    failures = parser.lastEventId !== lastEventId ? 0 : failures + 1;
    lastEventId = parser.lastEventId;
    if (done !== null) return done;
    if (signal?.aborted) throw new DOMException("aborted", "AbortError");
    if (failures > 20) {
      throw new ApiError(0, "stream_lost", "the job's event stream keeps dropping");
    }
    onReconnect?.(lastEventId);
    await sleep(Math.min(250 * 2 ** failures, 5000), signal);
  }
  return done;
}
