"""The web console in a real browser (headless Chromium) on the live service.

Each test signs in with a real API key and works through the console's pages as a person
would: the browser calls the public /v1 API, the workers ingest and answer for real.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import Service
from tests.console.conftest import screenshot, sign_in
from tests.helpers import ingest_text, wait_job
from tests.receiver import Receiver, receiving

ANSWER_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


def test_console_is_served_with_its_security_policy(http: httpx.Client) -> None:
    page = http.get("/console/", headers={"Authorization": ""})
    assert page.status_code == 200 and 'type="module"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert http.get("/console", follow_redirects=False).headers["location"] == "/console/"
    links = http.get("/console/config.json").json()
    assert links["docs"] == "/docs" and links["grafana"] is None


def test_wrong_key_is_refused(page: Any, service: Service) -> None:
    page.goto("/console/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "sign-in")
    page.get_by_label("API key").fill("rq_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    error = page.locator("#signin-error")
    expect(error).to_have_text("invalid_api_key: the API key is unknown or revoked")
    expect(page.get_by_role("navigation", name="Console")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0

    # A key that stops working during the session (revoked) returns to sign-in with the reason:
    # at the next request, which may be the documents view's own refresh before the route change.
    sign_in(page, service.api_key)
    page.evaluate("sessionStorage.setItem('ragq.apiKey', 'rq_revoked')")
    page.evaluate("location.hash = '#/jobs'")
    expect(page.locator("#signin-error")).to_contain_text("invalid_api_key")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def drop_files(page: Any, files: dict[str, str]) -> None:
    """Drop files on the drop zone as a drag from the desktop would."""
    page.locator("#dropzone").evaluate(
        """(zone, files) => {
            const data = new DataTransfer();
            for (const [name, text] of Object.entries(files)) {
                data.items.add(new File([text], name, { type: "text/plain" }));
            }
            zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true }));
            zone.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true }));
        }""",
        files,
    )


def row_of(page: Any, upload: Any) -> Any:
    """The document table's row of an upload's document (found by id: titles may change)."""
    return page.locator(
        f'#documents-table tr[data-document="{upload.get_attribute("data-document")}"]'
    )


def test_upload_two_files_and_both_bars_reach_ready(
    page: Any, service: Service, http: httpx.Client
) -> None:
    tag = uuid.uuid4().hex[:8]
    files = {
        f"orchard-{tag}.txt": f"The Velmont orchard {tag} grows sixty kinds of pear. " * 40,
        f"ferry-{tag}.md": f"# Ferry {tag}\n\nThe Oskel ferry crosses the fjord at dawn. " * 40,
    }
    broken = f"scan-{tag}.bin"
    sign_in(page, service.api_key)
    # Every state each upload's row goes through, as the page shows it.
    page.locator("#uploads").evaluate(
        """uploads => {
            window.states = {};
            new MutationObserver(changes => {
                for (const { target } of changes) {
                    const seen = (window.states[target.dataset.name] ??= []);
                    if (seen.at(-1) !== target.dataset.state) seen.push(target.dataset.state);
                }
            }).observe(uploads, { subtree: true, attributeFilter: ["data-state"] });
        }"""
    )
    drop_files(page, {**files, broken: "GIF89a\x00\x01\x02\x03" * 50})
    for name in files:
        item = page.locator(f'li.upload[data-name="{name}"]')
        expect(item).to_have_attribute("data-state", "ready", timeout=120_000)
        expect(item.locator("progress")).to_have_js_property("value", 1)
        expect(item.locator(".state")).to_have_text(re.compile(r"ready: \d+ chunks"))
        row = row_of(page, item)
        expect(row).to_have_attribute("data-status", "ready")
        expect(row.locator("td").nth(3)).to_have_text(re.compile(r"\d\.\d KB"))  # the size
        # The bar followed the upload, then the job, then the document's status.
        states = page.evaluate("window.states")[name]
        assert states[0] == "uploading" and states[-1] == "ready", states
        assert {"queued", "ingesting"} & set(states), states

    # A file the service cannot read: its bar and its row say why, from the job's error.
    failed = page.locator(f'li.upload[data-name="{broken}"]')
    expect(failed).to_have_attribute("data-state", "failed", timeout=120_000)
    reason = "unsupported_format: the file is binary, not text"
    expect(failed.locator(".state")).to_have_text(reason)
    expect(row_of(page, failed)).to_have_attribute("data-status", "failed")
    expect(row_of(page, failed).locator("p.error")).to_have_text(reason)
    screenshot(page, "documents")

    orchard, ferry = (page.locator(f'li.upload[data-name="{name}"]') for name in files)
    row_of(page, orchard).get_by_role("button", name=re.compile("Re-index")).click()
    document_id = orchard.get_attribute("data-document")
    deadline = time.monotonic() + 30
    while not (jobs := http.get("/v1/jobs", params={"kind": "reindex"}).json()["jobs"]) or all(
        job["document_id"] != document_id for job in jobs
    ):
        assert time.monotonic() < deadline, "no re-index job"
        time.sleep(0.2)
    reindex = next(job for job in jobs if job["document_id"] == document_id)
    assert wait_job(http, reindex["job_id"])["status"] == "succeeded"
    expect(row_of(page, orchard)).to_have_attribute("data-status", "ready")
    page.once("dialog", lambda dialog: dialog.accept())
    row_of(page, ferry).get_by_role("button", name=re.compile("Delete")).click()
    expect(row_of(page, ferry)).to_have_count(0, timeout=120_000)


def test_a_chosen_folder_uploads_every_file_in_it(
    page: Any, service: Service, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    folder = tmp_path / f"notes-{tag}"
    (folder / "harbour").mkdir(parents=True)
    (folder / "tides.txt").write_text(f"Tide tables {tag}: high water at noon. " * 20)
    (folder / "harbour" / "boats.md").write_text(f"# Boats {tag}\n\nSix boats moor here. " * 20)
    sign_in(page, service.api_key)
    page.locator("#folder-input").set_input_files(folder)
    for path in (f"notes-{tag}/tides.txt", f"notes-{tag}/harbour/boats.md"):
        item = page.locator(f'li.upload[data-name="{path}"]')
        expect(item).to_have_attribute("data-state", "ready", timeout=120_000)
    # A file's path within the folder is its title.
    expect(page.locator("#documents-table")).to_contain_text(f"notes-{tag}/tides.txt")


def test_ask_streams_the_answer_and_opens_a_cited_passage(
    page: Any, service: Service, http: httpx.Client
) -> None:
    tag = uuid.uuid4().hex[:8]
    fact = f"The Quarn lighthouse {tag} was built in 1871 by the engineer Maren Tolle."
    title = f"Quarn lighthouse {tag}"
    document_id = ingest_text(http, f"{fact} Its lamp burns whale oil. " * 6, title)["document_id"]
    sign_in(page, service.api_key, "ask")
    page.get_by_label("Question").fill(f"Who built the Quarn lighthouse {tag}?")
    page.get_by_label("Passages (top_k)").fill("3")
    page.get_by_label("Mode").select_option("hybrid")
    page.get_by_label("Only these documents").select_option(label=title)
    # Record what the answer region shows while the job still runs: text streams in.
    page.locator("#answer").evaluate(
        """answer => {
            window.streamed = [];
            new MutationObserver(() => {
                const busy = answer.getAttribute("aria-busy") === "true";
                if (busy && answer.textContent) window.streamed.push(answer.textContent);
            }).observe(answer, { childList: true, subtree: true, characterData: true });
        }"""
    )
    page.get_by_role("button", name="Ask").click()
    answer = page.locator("#answer")
    expect(answer).to_have_attribute("data-status", "succeeded", timeout=ANSWER_TIMEOUT_MS)
    job_id = answer.get_attribute("data-job")
    result = http.get(f"/v1/jobs/{job_id}").json()["result"]
    assert result["answer"].strip()
    assert 1 <= len(result["citations"]) <= 3
    assert {c["document_id"] for c in result["citations"]} == {document_id}  # the filter
    # What streamed is exactly the answer: nothing lost, nothing repeated, no correction needed.
    expect(answer).to_have_text(result["answer"])
    assert answer.get_attribute("data-resynced") is None
    # Text was on screen while the job still ran, and each view of it began the final answer.
    streamed = page.evaluate("window.streamed")
    assert streamed, "no text appeared before the answer was done"
    assert all(result["answer"].startswith(text) for text in streamed), streamed

    cited = [c for c in result["citations"] if c["cited"]]
    uncited = [c for c in result["citations"] if not c["cited"]]
    expect(page.locator("#cited li")).to_have_count(len(cited))
    expect(page.locator("#uncited li")).to_have_count(len(uncited))
    markers = page.locator("#answer button.cite")
    if markers.count():
        target = cited[int(markers.first.get_attribute("data-n")) - 1]
        markers.first.click()
    else:
        # The model wrote no [n]: the retrieved passages are listed apart and open the same way.
        target = next(c for c in result["citations"] if tag in c["text"])
        page.locator(".passages button.link", has_text=target["title"]).first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_contain_text(target["title"])
    expect(dialog.locator("blockquote")).to_have_text(target["text"])
    expect(dialog).to_contain_text(f"score {target['score']:.3f}")
    screenshot(page, "ask-passage", full_page=False)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    screenshot(page, "ask")


def test_stop_cancels_a_running_answer(page: Any, service: Service, http: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    text = f"The Harlow signal tower {tag} stands on the north cape and guides the fishing fleet."
    ingest_text(http, f"{text} " * 6, f"Harlow signal tower {tag}")
    sign_in(page, service.api_key, "ask")
    # A question the documents cover, so that an answer is generated (not refused as ungrounded).
    page.get_by_label("Question").fill(f"Describe the Harlow signal tower {tag} in detail.")
    page.get_by_role("button", name="Ask").click()
    answer = page.locator("#answer")
    # Passages retrieved: the job is handed to generation, which Stop interrupts.
    expect(page.locator("#ask-status")).to_have_text("Generating…", timeout=ANSWER_TIMEOUT_MS)
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_enabled()
    stop.click()
    expect(answer).to_have_attribute("data-status", "cancelled", timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator("#ask-status")).to_have_text("Stopped.")
    expect(stop).to_be_disabled()
    record = http.get(f"/v1/jobs/{answer.get_attribute('data-job')}").json()
    assert record["status"] == "cancelled" and record["result"] is None, record


def test_dropped_stream_resumes_without_losing_or_repeating_text(
    page: Any, service: Service, http: httpx.Client
) -> None:
    tag = uuid.uuid4().hex[:8]
    ingest_text(http, f"The Brask canal {tag} opened in 1902 and carries timber. " * 6, "Canal")
    requests: list[dict[str, str]] = []

    def cut_first_stream(route: Any) -> None:
        requests.append(route.request.headers)
        if len(requests) > 1:
            route.continue_()
            return
        # The first connection drops in the middle of the event after the first token.
        events = route.fetch(timeout=ANSWER_TIMEOUT_MS).text().split("\r\n\r\n")
        first = next(n for n, event in enumerate(events) if "event: token" in event)
        cut = events[first + 1]
        kept = "\r\n\r\n".join([*events[: first + 1], cut[: len(cut) // 2]])
        route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=kept)

    page.route("**/v1/jobs/*/events", cut_first_stream)
    sign_in(page, service.api_key, "ask")
    page.get_by_label("Question").fill(f"When did the Brask canal {tag} open?")
    page.get_by_role("button", name="Ask").click()
    answer = page.locator("#answer")
    expect(answer).to_have_attribute("data-status", "succeeded", timeout=ANSWER_TIMEOUT_MS)
    result = http.get(f"/v1/jobs/{answer.get_attribute('data-job')}").json()["result"]
    expect(answer).to_have_text(result["answer"])
    assert answer.get_attribute("data-resynced") is None
    assert answer.get_attribute("data-reconnects") == "1"
    assert len(requests) == 2 and "last-event-id" not in requests[0]
    assert re.fullmatch(r"\d+-\d+", requests[1]["last-event-id"]), requests[1]


def wait_delivery_state(http: httpx.Client, job_id: str, state: str) -> None:
    deadline = time.monotonic() + 60
    while http.get(f"/v1/jobs/{job_id}/deliveries").json()["state"] != state:
        assert time.monotonic() < deadline, f"delivery never reached {state}"
        time.sleep(0.2)


def test_failed_webhook_delivery_is_shown_and_redelivered(
    page: Any, service: Service, http: httpx.Client, receiver: Receiver
) -> None:
    url = receiver.url([500, 500, 500, 500])
    text = f"Webhook console test {uuid.uuid4()}: the tide tables of Tavik harbour."
    response = http.post("/v1/documents", json={"text": text, "webhook_url": url})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    wait_job(http, job_id)
    wait_delivery_state(http, job_id, "failed")

    sign_in(page, service.api_key, "jobs")
    row = page.locator(f'#jobs-table tr[data-job="{job_id}"]')
    expect(row).to_contain_text("ingest")
    expect(row).to_contain_text("succeeded")
    screenshot(page, "jobs")
    row.get_by_role("link").click()
    expect(page.get_by_role("heading", name=re.compile("Job"))).to_contain_text(job_id)
    expect(page.locator("#timeline li[data-event=done]")).to_have_count(1)
    expect(page.locator("#job-result")).to_contain_text("chunks")
    summary = page.locator("#deliveries-summary")
    expect(summary).to_have_attribute("data-state", "failed")
    attempts = page.locator("#deliveries-table tbody tr")
    expect(attempts).to_have_count(4)
    expect(attempts.first).to_contain_text("HTTP 500")
    page.get_by_role("button", name="Redeliver attempt 4").click()
    expect(attempts).to_have_count(5, timeout=30_000)
    expect(attempts.nth(4)).to_contain_text("(manual)")
    expect(attempts.nth(4)).to_contain_text("HTTP 200")
    expect(summary).to_have_attribute("data-state", "delivered")
    assert len(receiver.requests(url)) == 5
    screenshot(page, "job")


def test_pages_fit_a_phone_and_every_control_has_a_name(page: Any, service: Service) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, service.api_key)
    for view in ("documents", "ask", "jobs"):
        page.goto(f"/console/#/{view}")
        page.get_by_role("heading", level=1).wait_for()
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{view} is {overflow}px wider than a phone"
        unnamed = page.evaluate(
            """() => [...document.querySelectorAll("input, select, textarea, button")]
                .filter(el => !el.closest("[hidden], template, dialog:not([open])"))
                .filter(el => !(el.labels?.length || el.getAttribute("aria-label")
                                || el.textContent.trim()))
                .map(el => el.outerHTML)"""
        )
        assert not unnamed, unnamed
        screenshot(page, f"phone-{view}")
