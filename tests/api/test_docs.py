"""/docs and /redoc load every asset from the API itself, so they work without internet."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import Service

ASSET = re.compile(r"""(?:src|href|spec-url)="([^"]+)"|url: '([^']+)'""")


@pytest.mark.parametrize(
    ("page", "kinds"),
    [
        ("/docs", {"text/css", "image/png", "text/javascript"}),
        ("/redoc", {"image/png", "text/javascript"}),
    ],
)
def test_docs_pages_reference_only_local_assets_that_answer(
    service: Service, page: str, kinds: set[str]
) -> None:
    response = httpx.get(f"{service.base_url}{page}")
    assert response.status_code == 200, response.text
    html = response.text
    assert not re.search(r"https?://|//cdn|fonts\.googleapis", html), html
    urls = {a or b for a, b in ASSET.findall(html)}
    assert "/openapi.json" in urls
    types = set()
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = httpx.get(f"{service.base_url}{url}")
        assert asset.status_code == 200, url
        types.add(asset.headers["content-type"].partition(";")[0])
    assert kinds <= types, types
