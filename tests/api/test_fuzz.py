"""Property-based fuzzing of the whole OpenAPI schema against the running service.

Schemathesis generates valid and invalid requests for every operation; each answer must be
no 5xx and must conform to the schema (status code, content type, body, headers). The suite
runs a bounded number of examples (RAGQ_FUZZ_EXAMPLES per operation); `bench/fuzz.sh` runs
the same test with many more.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
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
CHECKS = [
    not_a_server_error,
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
