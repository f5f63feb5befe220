"""PhotoLoader: URL downloads are capped in all and per tenant."""

from __future__ import annotations

import asyncio

from faceauth.photos.loader import PhotoLoader
from faceauth.photos.sources import Photo


class SlowFetcher:
    """Fault injection only (a stand-in for the network): each download takes a while; it records how many run at
    once, in all and per URL host (one host per tenant here)."""

    def __init__(self) -> None:
        self.running: dict[str, int] = {}
        self.peak_total = 0
        self.peak_per_host: dict[str, int] = {}

    async def fetch(self, url: str) -> bytes:
        host = url.split("/")[2]
        self.running[host] = self.running.get(host, 0) + 1
        self.peak_total = max(self.peak_total, sum(self.running.values()))
        self.peak_per_host[host] = max(self.peak_per_host.get(host, 0), self.running[host])
        try:
            await asyncio.sleep(0.02)
            return b"image"
        finally:
            self.running[host] -= 1

    async def aclose(self) -> None:
        return None


def test_url_downloads_are_capped_per_tenant_and_in_all():
    fetcher = SlowFetcher()
    loader = PhotoLoader(
        fetcher,  # type: ignore[arg-type]
        objects=None,  # type: ignore[arg-type]  # no s3:// URLs here
        max_bytes=1024,
        bucket="b",
        drop_prefix="_uploads/",
        max_fetches=6,
        max_fetches_per_caller=2,
    )

    async def body() -> list[bytes]:
        reads = [
            loader.read(Photo.from_url("image_url", f"https://t{t}.example/{i}.jpg"), tenant=f"t{t}")
            for t in range(5)
            for i in range(10)
        ]
        return await asyncio.gather(*reads)

    assert asyncio.run(body()) == [b"image"] * 50
    assert fetcher.peak_total == 6
    assert max(fetcher.peak_per_host.values()) == 2
    assert loader._slots._callers == {}  # nothing kept for tenants that are done
