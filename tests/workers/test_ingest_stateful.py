"""A model-based test of the document lifecycle against the live service.

Hypothesis picks random interleavings of submit, update, re-submit, cancel, delete and reindex on
a few documents, without waiting for the jobs in between; at each check it waits until every job
has ended and compares the service with a model built from how each job ended: the document's
status and content hash, the version search serves, its chunk count, and no chunk of any other
version. `make lifecycle` runs it long with new seeds; RAGQ_LIFECYCLE_SEED replays a run's seed.
"""

from __future__ import annotations

import hashlib
import os
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from tests.helpers import wait_job
from tests.workers.test_ingest import long_text, served

DOCUMENTS = 3
# `make test` replays the same runs each time, so that it passes or fails on the code alone;
# `make lifecycle` explores new ones (RAGQ_LIFECYCLE_SEED=random).
SUITE_SEED = 20261202
SLOTS = st.integers(0, DOCUMENTS - 1)


def marker(n: int) -> str:
    """A word no other version uses, and no other stems to: letters only (search tokenises it
    whole), ending in "qz" (no English suffix, so the stemmer leaves it as it is)."""
    letters = ""
    while True:
        n, digit = divmod(n, 26)
        letters += chr(ord("a") + digit)
        if n == 0:
            return f"vexil{letters}qz"


@dataclass
class Request:
    """One request that made a job for a document."""

    kind: str  # ingest or delete
    job_id: str
    text: str = ""
    word: str = ""


@dataclass
class Document:
    """What the test sent for one document id."""

    document_id: str
    requests: list[Request] = field(default_factory=list)
    words: set[str] = field(default_factory=set)

    def last_ingest(self) -> Request | None:
        """The newest ingest request."""
        return next((r for r in reversed(self.requests) if r.kind == "ingest"), None)


class Lifecycle(RuleBasedStateMachine):
    """Random document operations on the live service, checked against a model."""

    def __init__(self, http: httpx.Client) -> None:
        super().__init__()
        self.http = http
        run = uuid.uuid4().hex[:8]
        self.docs = [Document(f"life-{run}-{i}") for i in range(DOCUMENTS)]
        self.versions = 0
        self.other_jobs: list[str] = []

    def _record(self, doc: Document, response: httpx.Response, text: str, word: str) -> None:
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "document_deleting", response.text
            assert doc.requests and doc.requests[-1].kind == "delete"
            return
        assert response.status_code in (200, 202), response.text
        job_id = response.json()["job_id"]
        if response.status_code == 202:
            doc.requests.append(Request("ingest", job_id, text, word))
        else:
            assert any(r.job_id == job_id and r.text == text for r in doc.requests)

    @rule(slot=SLOTS, medium=st.booleans())
    def submit(self, slot: int, medium: bool) -> None:
        """A new version of the document (a new document the first time)."""
        doc = self.docs[slot]
        word = marker(self.versions)
        self.versions += 1
        doc.words.add(word)
        text = long_text(word, 900) if medium else f"The {word} archive keeps one note."
        body = {"text": text, "document_id": doc.document_id}
        self._record(doc, self.http.post("/v1/documents", json=body), text, word)

    @rule(slot=SLOTS)
    def resubmit(self, slot: int) -> None:
        """The newest version's bytes again."""
        doc = self.docs[slot]
        last = doc.last_ingest()
        if last is not None:
            body = {"text": last.text, "document_id": doc.document_id}
            self._record(doc, self.http.post("/v1/documents", json=body), last.text, last.word)

    @rule(slot=SLOTS)
    def cancel(self, slot: int) -> None:
        """Cancel the newest ingest, whatever it is doing."""
        last = self.docs[slot].last_ingest()
        if last is not None:
            response = self.http.delete(f"/v1/jobs/{last.job_id}")
            assert response.status_code in (200, 409), response.text

    @rule(slot=SLOTS)
    def delete(self, slot: int) -> None:
        """Delete the document."""
        doc = self.docs[slot]
        response = self.http.delete(f"/v1/documents/{doc.document_id}")
        assert response.status_code in (202, 404), response.text
        if response.status_code == 202:
            job_id = response.json()["job_id"]
            if not any(r.job_id == job_id for r in doc.requests):
                doc.requests.append(Request("delete", job_id))

    @rule(slot=SLOTS)
    def reindex(self, slot: int) -> None:
        """Re-embed the document's chunks (it must change nothing that is served)."""
        response = self.http.post(f"/v1/documents/{self.docs[slot].document_id}:reindex")
        assert response.status_code in (202, 404, 409), response.text
        if response.status_code == 202:
            self.other_jobs.append(response.json()["job_id"])

    @rule()
    def check(self) -> None:
        """Wait until every job has ended, then compare each document with the model."""
        ended: dict[str, dict[str, Any]] = {}
        for doc in self.docs:
            for request in doc.requests:
                ended[request.job_id] = wait_job(self.http, request.job_id)
        for job_id in self.other_jobs:
            wait_job(self.http, job_id)
        for doc in self.docs:
            self._check(doc, ended)

    def _check(self, doc: Document, ended: dict[str, dict[str, Any]]) -> None:
        live: Request | None = None
        for request in doc.requests:
            if ended[request.job_id]["status"] == "succeeded":
                live = request if request.kind == "ingest" else None
        info = self.http.get(f"/v1/documents/{doc.document_id}")
        if live is None:
            assert info.status_code == 404, info.text
        else:
            assert info.status_code == 200, info.text
            assert info.json()["status"] == "ready", info.json()
            sha = hashlib.sha256(live.text.encode()).hexdigest()
            assert info.json()["content_sha256"] == sha
            chunks = ended[live.job_id]["result"]["chunks"]
            assert info.json()["chunks"] == chunks
            hits = served(self.http, doc.document_id, live.word)
            assert len(hits) == min(chunks, 100)
            assert all(live.word in hit["text"] for hit in hits)
        for word in doc.words - ({live.word} if live else set()):
            assert served(self.http, doc.document_id, word) == [], word

    def teardown(self) -> None:
        """End every run with a check."""
        self.check()


def test_document_lifecycle_matches_the_model(http: httpx.Client) -> None:
    """Bounded here (RAGQ_LIFECYCLE_EXAMPLES runs, 12 steps each); the seed is printed."""
    given = os.environ.get("RAGQ_LIFECYCLE_SEED") or str(SUITE_SEED)
    chosen = random.randrange(2**32) if given == "random" else int(given)
    print(f"document lifecycle: RAGQ_LIFECYCLE_SEED={chosen} replays this run")
    config = settings(
        max_examples=int(os.environ.get("RAGQ_LIFECYCLE_EXAMPLES", "6")),
        stateful_step_count=12,
        deadline=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )
    run_state_machine_as_test(seed(chosen)(lambda: Lifecycle(http)), settings=config)
