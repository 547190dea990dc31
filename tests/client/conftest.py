"""Fixtures of the client tests: a key of a tenant of its own, so each test sees only its jobs."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from common.apikeys import create_key, open_redis
from tests.conftest import Service


@pytest.fixture
def new_key(service: Service) -> Callable[[], str]:
    """Makes an API key of a new tenant."""

    def make() -> str:
        key, _ = create_key(open_redis(service.redis_url), f"client-{uuid.uuid4().hex[:10]}")
        return key

    return make
