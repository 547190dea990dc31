"""Property-based fuzzing of the whole OpenAPI schema against the running service.

Schemathesis generates valid and invalid requests for every operation; each answer must be
no 5xx and must conform to the schema (status code, content type, body, headers). Half of the
requests with a body also get a Unicode edge case (a lone surrogate, a NUL, an overlong string)
in place of one of its strings, a value or a key, at any depth. The suite runs a bounded
number of examples (RAGQ_FUZZ_EXAMPLES per operation); `bench/fuzz.sh` runs the same test with
many more.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app
from common.apikeys import create_key, open_redis
from common.settings import Settings
from tests.conftest import Service, auth

EXAMPLES = int(os.environ.get("RAGQ_FUZZ_EXAMPLES", "60"))  # 60: about 1,500 requests


def no_server_error(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """No 5xx, save a chat completion's 504 `deadline_exceeded`: the deadline it set passed."""
    timed_out = response.status_code == 504 and case.path == "/v1/chat/completions"
    if timed_out and json.loads(response.content)["error"]["code"] == "deadline_exceeded":
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
SENT: list[int] = []
CREATED: list[str] = []


@pytest.fixture(scope="module")
def fuzz_key(service: Service) -> Iterator[str]:
    """A key of a tenant of its own, so fuzzed jobs and documents touch no other test; the
    jobs the fuzzer created are cancelled afterwards, so they do not load later tests."""
    key, _ = create_key(open_redis(service.redis_url), f"fuzz-{uuid.uuid4().hex[:8]}")
    yield key
    with httpx.Client(base_url=service.base_url, timeout=30, headers=auth(key)) as http:
        for job_id in CREATED:
            http.delete(f"/v1/jobs/{job_id}")


# The schema the running API serves, built from the same app (no server is needed to collect).
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


# Hypothesis never generates surrogates and seldom long strings. A surrogate cannot travel in
# a UTF-8 multipart part, so multipart bodies get the other cases only.
EDGE_STRINGS = ["lone \ud800 surrogate", "\udfff", "\ud83d", "nul \x00 char", "x" * 5000]
ENCODABLE = [s for s in EDGE_STRINGS if not any("\ud800" <= c <= "\udfff" for c in s)]
Slot = tuple[tuple[str | int, ...], bool]  # the path to a string, and whether it is a dict key


def string_slots(value: object, path: tuple[str | int, ...] = ()) -> Iterator[Slot]:
    """Where the strings of a JSON value are: values and dict keys, at any depth."""
    if isinstance(value, str):
        yield path, False
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from string_slots(item, (*path, n))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key), True
            yield from string_slots(item, (*path, key))


def with_edge(value: Any, path: tuple[str | int, ...], is_key: bool, edge: str) -> Any:
    """A copy of the value with `edge` in place of the string (or key) at `path`."""
    if not path:
        return edge
    head, rest = path[0], path[1:]
    if isinstance(value, list):
        return [with_edge(v, rest, is_key, edge) if n == head else v for n, v in enumerate(value)]
    if is_key and not rest:
        return {(edge if k == head else k): v for k, v in value.items()}
    return {k: with_edge(v, rest, is_key, edge) if k == head else v for k, v in value.items()}


@schema.hook
def flatmap_case(context: Any, case: schemathesis.Case) -> st.SearchStrategy[schemathesis.Case]:
    """The case as generated, or with a Unicode edge case in place of one of its body's strings."""
    slots = list(string_slots(case.body)) if isinstance(case.body, dict | list) else []
    if not slots:
        return st.just(case)
    edges = EDGE_STRINGS if case.media_type == "application/json" else ENCODABLE

    def put(choice: tuple[Slot, str]) -> schemathesis.Case:
        (path, is_key), edge = choice
        # Set as generation sets it: an edited body would be validated again against the
        # schema before the call, which cannot encode a surrogate (only the server may judge).
        object.__setattr__(case, "body", with_edge(case.body, path, is_key, edge))
        return case

    edited = st.tuples(st.sampled_from(slots), st.sampled_from(edges)).map(put)
    return st.one_of(st.just(case), edited)


def test_the_served_schema_is_the_fuzzed_one(service: Service) -> None:
    served = httpx.get(f"{service.base_url}/openapi.json", timeout=30).json()
    assert served == schema.raw_schema


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_5xx_and_no_schema_violations(
    case: schemathesis.Case, service: Service, fuzz_key: str
) -> None:
    response = case.call_and_validate(
        base_url=service.base_url, headers=auth(fuzz_key), checks=CHECKS, timeout=60
    )
    if response.status_code == 202:
        body = response.json()
        CREATED.extend(job["job_id"] for job in body.get("jobs", [body]) if "job_id" in job)
    SENT.append(
        int(case.meta.generation.mode == schemathesis.GenerationMode.NEGATIVE) if case.meta else 0
    )


def test_enough_requests_were_sent() -> None:
    """The bounded run still covers every operation with many requests."""
    if not SENT:
        pytest.skip("the fuzz test did not run in this session")
    print(f"fuzzing sent {len(SENT)} requests, {sum(SENT)} of them invalid on purpose")
    assert len(SENT) >= min(1000, EXAMPLES * 17), len(SENT)
