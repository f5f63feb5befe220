"""Swagger UI works offline: both services serve its page and assets from the installed package, with no CDN URL,
and the Face API's assets need no key (the page is public, like the OpenAPI document)."""

from __future__ import annotations

import re

import httpx

from faceauth.kit.docs import DOCS_ASSETS


def _assets(page: str) -> list[str]:
    return re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page)


def test_the_face_api_serves_swagger_ui_from_the_package_without_a_key(api):
    api.headers.pop("X-Api-Key", None)  # a visitor with no key
    page = api.get("/docs")
    assert page.status_code == 200
    assets = _assets(page.text)
    assert assets and all(a.startswith(DOCS_ASSETS) for a in assets), assets
    assert "cdn" not in page.text.lower()
    for asset in assets:
        r = api.get(asset)
        assert r.status_code == 200 and len(r.content) > 500, asset
    assert api.get("/v1/subjects").status_code == 401  # the rest still needs a key


def test_the_ml_service_serves_swagger_ui_from_the_package(ml_service):
    page = httpx.get(f"{ml_service.url}/docs", timeout=10)
    assert page.status_code == 200 and "cdn" not in page.text.lower()
    js = httpx.get(f"{ml_service.url}{DOCS_ASSETS}/swagger-ui-bundle.js", timeout=10)
    assert js.status_code == 200 and "SwaggerUI" in js.text[:200000]
