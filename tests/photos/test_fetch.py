"""The image downloader: address classification, DNS pinning, redirects and limits.

Classification and resolver-level refusals connect nowhere: `FakeResolver` and `RecordingTransport` are fakes
used only to inject DNS answers and to prove that nothing was sent. Everything else runs against real HTTP(S)
servers on 127.0.0.1 (the suite-wide loopback guard fails any other connection or name lookup).
"""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from PIL import Image

from bench.servers.process import free_port
from faceauth.photos.fetch import ImageFetcher, ImageURLError, _PoolPerServerName, forbidden_reason


def small_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 120, 40)).save(buf, "JPEG")
    return buf.getvalue()


JPEG = small_jpeg()


# -- address classification (nothing connects) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "metadata"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("fe80::1", "link-local"),
        ("64:ff9b::a00:1", "private"),
        ("169.254.1.1", "link-local"),
        ("100.64.0.1", "cgnat"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.7", "documentation"),
        ("198.18.0.1", "benchmark"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("::a00:1", "private"),  # IPv4-compatible 10.0.0.1
        ("::8.8.8.8", "reserved"),  # IPv4-compatible form is deprecated whatever it holds
        ("::ffff:169.254.169.254", "metadata"),
        ("::", "unspecified"),
        ("fe80::1%eth0", "link-local"),
        ("not-an-ip", "invalid"),
    ],
)
def test_addresses_that_are_not_globally_routable_are_refused(ip: str, reason: str):
    assert forbidden_reason(ip) == reason


@pytest.mark.parametrize("ip", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_public_addresses_are_allowed(ip: str):
    assert forbidden_reason(ip) is None


# -- fakes for DNS answers and for proving nothing was sent -----------------------------------------------------


class FakeResolver:
    """Fault injection only: answers from a table and records the questions; other names fail like NXDOMAIN."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.table[host])


class RecordingTransport(httpx.AsyncBaseTransport):
    """Records every request and answers it with `answer` (a JPEG by default); connects nowhere."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = answer or (lambda _: httpx.Response(200, headers={"Content-Type": "image/jpeg"}, content=JPEG))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)


def fetch_all(urls: list[str], **options) -> list[bytes | ImageURLError]:
    """Fetch each URL in turn with one fetcher; an ImageURLError is returned in place of the bytes."""

    async def run() -> list[bytes | ImageURLError]:
        results: list[bytes | ImageURLError] = []
        async with ImageFetcher(**options) as fetcher:
            for url in urls:
                try:
                    results.append(await fetcher.fetch(url))
                except ImageURLError as exc:
                    results.append(exc)
        return results

    return asyncio.run(run())


def fetch(url: str, **options) -> bytes:
    result = fetch_all([url], **options)[0]
    if isinstance(result, ImageURLError):
        raise result
    return result


def refused(url: str, code: str, **options) -> ImageURLError:
    with pytest.raises(ImageURLError) as info:
        fetch(url, **options)
    assert info.value.code == code, info.value.details
    return info.value


STATUS = {
    "image_url_invalid": 422,
    "image_url_forbidden": 400,
    "image_url_unreachable": 422,
    "image_url_too_large": 413,
    "image_url_not_image": 415,
    "image_url_too_many_redirects": 422,
}


# -- refusals decided before any connection ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "answers", "reason"),
    [
        ("internal.example", ["10.0.0.1"], "private"),
        ("metadata.example", ["169.254.169.254"], "metadata"),
        ("mixed.example", ["93.184.216.34", "10.0.0.1"], "private"),  # any bad answer refuses the host
        ("mixed6.example", ["2606:4700:4700::1111", "::1"], "loopback"),
        ("mapped.example", ["::ffff:192.168.0.1"], "private"),
    ],
)
def test_a_host_resolving_to_a_forbidden_address_is_refused_before_connecting(host, answers, reason):
    resolver, transport = FakeResolver({host: answers}), RecordingTransport()
    error = refused(f"https://{host}/photo.jpg", "image_url_forbidden", resolver=resolver, transport=transport)
    assert error.status == 400
    assert error.details == {"url": f"https://{host}/photo.jpg", "reason": reason}
    assert resolver.asked == [host]
    assert transport.requests == []


def test_ip_literals_are_checked_without_dns():
    resolver, transport = FakeResolver({}), RecordingTransport()
    for url in ["http://10.0.0.1/a.jpg", "http://[::ffff:10.0.0.1]/a.jpg", "http://169.254.169.254/latest/"]:
        refused(url, "image_url_forbidden", resolver=resolver, transport=transport)
    assert fetch("http://8.8.8.8/a.jpg", resolver=resolver, transport=transport) == JPEG
    assert resolver.asked == []
    assert [str(r.url) for r in transport.requests] == ["http://8.8.8.8/a.jpg"]


def test_the_request_goes_to_the_checked_address_with_the_name_in_host_and_sni():
    resolver = FakeResolver({"photos.example": ["93.184.216.34"], "v6.example": ["2606:4700:4700::1111"]})
    transport = RecordingTransport()
    urls = ["https://photos.example/a/b.jpg?sig=1", "http://photos.example:8080/c.jpg", "https://v6.example/d.jpg"]
    assert fetch_all(urls, resolver=resolver, transport=transport) == [JPEG] * 3
    first, second, third = transport.requests
    assert str(first.url) == "https://93.184.216.34/a/b.jpg?sig=1"
    assert first.headers["Host"] == "photos.example"
    assert first.extensions["sni_hostname"] == "photos.example"
    assert str(second.url) == "http://93.184.216.34:8080/c.jpg"
    assert second.headers["Host"] == "photos.example:8080"
    assert "sni_hostname" not in second.extensions
    assert str(third.url) == "https://[2606:4700:4700::1111]/d.jpg"
    assert third.extensions["sni_hostname"] == "v6.example"
    assert resolver.asked == ["photos.example", "photos.example", "v6.example"]  # once per fetch, never again
    assert first.headers["User-Agent"] == "faceauth-image-fetch"


def test_cookies_are_not_kept_between_fetches():
    def answer(_: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": "image/jpeg", "Set-Cookie": "session=abc; Path=/"}
        return httpx.Response(200, headers=headers, content=JPEG)

    transport = RecordingTransport(answer)
    fetch_all(["http://8.8.8.8/a.jpg", "http://8.8.8.8/b.jpg"], transport=transport)
    assert [r.headers.get("Cookie") for r in transport.requests] == [None, None]


def test_a_dns_failure_is_unreachable():
    transport = RecordingTransport()
    error = refused(
        "http://nowhere.example/a.jpg", "image_url_unreachable", resolver=FakeResolver({}), transport=transport
    )
    assert error.details == {"url": "http://nowhere.example/a.jpg", "reason": "dns"}
    assert transport.requests == []


@pytest.mark.parametrize(
    ("headers", "body", "code"),
    [
        ({}, JPEG, None),  # no content type: judged by the bytes
        ({"Content-Type": "application/octet-stream"}, JPEG, None),
        ({"Content-Type": "IMAGE/JPEG; charset=binary"}, JPEG, None),
        ({}, b"<html>hello</html>", "image_url_not_image"),
        ({"Content-Type": "image/svg+xml"}, b"<svg/>", "image_url_not_image"),
        ({"Content-Type": "text/plain"}, JPEG, "image_url_not_image"),
    ],
)
def test_the_content_type_and_the_bytes_must_both_say_image(headers, body, code):
    transport = RecordingTransport(lambda _: httpx.Response(200, headers=headers, content=body))
    if code is None:
        assert fetch("http://8.8.8.8/a", transport=transport) == body
    else:
        refused("http://8.8.8.8/a", code, transport=transport)


def test_the_query_string_is_never_reported_or_logged(caplog: pytest.LogCaptureFixture):
    transport = RecordingTransport(lambda _: httpx.Response(403))
    caplog.set_level(logging.DEBUG)
    error = refused("https://8.8.8.8/p.jpg?X-Amz-Signature=s3cr3t#frag", "image_url_unreachable", transport=transport)
    assert error.details == {"url": "https://8.8.8.8/p.jpg", "reason": "upstream error", "upstream_status": 403}
    assert "s3cr3t" not in caplog.text
    assert "s3cr3t" not in str(error)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/a.jpg",
        "file:///etc/passwd",
        "http://user:pw@127.0.0.1/a.jpg",
        "http://@127.0.0.1/a.jpg",
        "http:///x",
        "http://127.0.0.1:99999/a.jpg",
        "http://127.0.0.1:0/a.jpg",
        "http://127.0.0.1:abc/a.jpg",
        "http://exa mple.com/a.jpg",
        "not a url",
        "",
    ],
)
def test_malformed_urls_are_invalid(url: str):
    transport = RecordingTransport()
    error = refused(url, "image_url_invalid", allowed_hosts=["127.0.0.1"], transport=transport)
    assert error.status == 422
    assert "pw" not in str(error.details)
    assert transport.requests == []


# -- a real server on 127.0.0.1 -----------------------------------------------------------------------------------


@dataclass
class Route:
    status: int = 200
    body: bytes = JPEG
    content_type: str | None = "image/jpeg"
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False
    delay_s: float = 0.0  # before the status line
    drip_s: float = 0.0  # between body bytes


class PhotoServer:
    """HTTP/1.1 (keep-alive) on 127.0.0.1, optionally TLS; logs each request's path, Host header and SNI name."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        self.hosts: list[str | None] = []
        self.server_names: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.requests.append(self.path)
                server.hosts.append(self.headers.get("Host"))
                route = server.routes.get(self.path, Route(status=404, body=b"not found", content_type="text/plain"))
                time.sleep(route.delay_s)
                self.send_response(route.status)
                if route.content_type:
                    self.send_header("Content-Type", route.content_type)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                if route.drip_s:
                    self.close_connection = True
                    for i in range(len(route.body)):
                        self.wfile.write(route.body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(route.drip_s)
                elif route.chunked:
                    for i in range(0, len(route.body), 4096):
                        piece = route.body[i : i + 4096]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.wfile.write(route.body)

            def log_message(self, *args: object) -> None:
                return None

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                return None  # a client that hung up on purpose (limits, timeouts) is not a test failure

        self.httpd = Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: server.server_names.append(name)
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def __enter__(self) -> PhotoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def photo_server() -> Iterator[PhotoServer]:
    with PhotoServer() as server:
        yield server


LOOPBACK = {"allowed_hosts": ["127.0.0.1"]}


def test_a_real_photo_is_fetched_byte_for_byte(photo_server: PhotoServer, photo_bytes):
    photo = photo_bytes("img1.jpg")
    photo_server.routes["/faces/img1.jpg?token=x"] = Route(body=photo)
    assert fetch(photo_server.url("/faces/img1.jpg?token=x"), **LOOPBACK) == photo
    assert photo_server.requests == ["/faces/img1.jpg?token=x"]
    assert photo_server.hosts == [f"127.0.0.1:{photo_server.port}"]


def test_loopback_is_refused_unless_allowed(photo_server: PhotoServer):
    photo_server.routes["/a.jpg"] = Route()
    error = refused(photo_server.url("/a.jpg"), "image_url_forbidden")
    assert error.details["reason"] == "loopback"
    refused(photo_server.url("/a.jpg"), "image_url_forbidden", allowed_hosts=["127.0.0.1:1"])  # another port
    assert photo_server.requests == []
    assert fetch(photo_server.url("/a.jpg"), allowed_hosts=[f"127.0.0.1:{photo_server.port}"]) == JPEG


def test_an_allowed_name_is_still_pinned_to_its_resolved_address(photo_server: PhotoServer):
    photo_server.routes["/a.jpg"] = Route()
    resolver = FakeResolver({"photos.test": ["127.0.0.1"]})
    url = photo_server.url("/a.jpg", host="PHOTOS.test")
    assert fetch(url, allowed_hosts=["photos.test"], resolver=resolver) == JPEG
    assert photo_server.hosts == [f"photos.test:{photo_server.port}"]


def test_redirects_within_the_limit_are_followed(photo_server: PhotoServer):
    photo_server.routes["/a"] = Route(status=301, headers={"Location": "/b"}, body=b"")
    photo_server.routes["/b"] = Route(status=302, headers={"Location": "c?x=1"}, body=b"")
    photo_server.routes["/c?x=1"] = Route(status=307, headers={"Location": photo_server.url("/photo.jpg")}, body=b"")
    photo_server.routes["/photo.jpg"] = Route()
    assert fetch(photo_server.url("/a"), max_redirects=3, **LOOPBACK) == JPEG
    assert photo_server.requests == ["/a", "/b", "/c?x=1", "/photo.jpg"]


def test_too_many_redirects_are_refused(photo_server: PhotoServer):
    for i in range(5):
        photo_server.routes[f"/r{i}"] = Route(status=302, headers={"Location": f"/r{i + 1}"}, body=b"")
    photo_server.routes["/r5"] = Route()
    error = refused(photo_server.url("/r0"), "image_url_too_many_redirects", max_redirects=3, **LOOPBACK)
    assert error.status == 422
    assert photo_server.requests == ["/r0", "/r1", "/r2", "/r3"]


@pytest.mark.parametrize("host", ["127.0.0.2", "localhost", "[::1]"])
def test_a_redirect_to_a_loopback_address_that_is_not_allowed_is_refused(photo_server: PhotoServer, host: str):
    photo_server.routes["/a"] = Route(status=302, headers={"Location": photo_server.url("/b", host=host)}, body=b"")
    photo_server.routes["/b"] = Route()
    error = refused(photo_server.url("/a"), "image_url_forbidden", **LOOPBACK)  # the system resolver for localhost
    assert error.details == {
        "url": photo_server.url("/a"),
        "reason": "loopback",
        "redirect_url": photo_server.url("/b", host=host),
    }
    assert photo_server.requests == ["/a"]


def test_a_redirect_to_a_name_resolving_to_a_private_address_is_refused(photo_server: PhotoServer):
    target = f"http://rebind.example:{photo_server.port}/b"
    photo_server.routes["/a"] = Route(status=302, headers={"Location": target}, body=b"")
    resolver = FakeResolver({"rebind.example": ["10.0.0.1"]})
    error = refused(photo_server.url("/a"), "image_url_forbidden", resolver=resolver, **LOOPBACK)
    assert error.details["reason"] == "private"
    assert resolver.asked == ["rebind.example"]
    assert photo_server.requests == ["/a"]


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_limit_is_refused(photo_server: PhotoServer, chunked: bool):
    photo_server.routes["/big.jpg"] = Route(body=JPEG + bytes(50_000), chunked=chunked)
    error = refused(photo_server.url("/big.jpg"), "image_url_too_large", max_bytes=10_000, **LOOPBACK)
    assert error.status == 413
    photo_server.routes["/fits.jpg"] = Route(body=JPEG + bytes(10_000 - len(JPEG)), chunked=chunked)
    assert len(fetch(photo_server.url("/fits.jpg"), max_bytes=10_000, **LOOPBACK)) == 10_000


@pytest.mark.parametrize(
    "route",
    [
        Route(content_type="text/html", body=b"<html><body>hi</body></html>"),
        Route(content_type="image/jpeg", body=b"definitely not a jpeg"),
        Route(content_type="image/jpeg", body=b""),
        Route(content_type=None, body=b"plain bytes"),
    ],
)
def test_what_is_not_an_image_is_refused(photo_server: PhotoServer, route: Route):
    photo_server.routes["/x"] = route
    assert refused(photo_server.url("/x"), "image_url_not_image", **LOOPBACK).status == 415


def test_an_error_answer_is_unreachable_with_its_status(photo_server: PhotoServer):
    error = refused(photo_server.url("/missing.jpg"), "image_url_unreachable", **LOOPBACK)
    assert error.details["upstream_status"] == 404


@pytest.mark.parametrize(
    "route",
    [
        Route(delay_s=3.0),  # no answer at all
        Route(drip_s=0.1),  # each read is quick, the whole download is not
    ],
)
def test_a_slow_server_times_out(photo_server: PhotoServer, route: Route):
    photo_server.routes["/slow.jpg"] = route
    started = time.monotonic()
    error = refused(photo_server.url("/slow.jpg"), "image_url_unreachable", timeout_s=0.5, **LOOPBACK)
    assert error.details["reason"] == "timeout"
    assert time.monotonic() - started < 2.0


def test_a_refused_connection_is_unreachable():
    error = refused(f"http://127.0.0.1:{free_port()}/a.jpg", "image_url_unreachable", **LOOPBACK)
    assert error.details["reason"] == "connect"


def test_every_code_has_its_status(photo_server: PhotoServer):
    photo_server.routes["/r"] = Route(status=302, headers={"Location": "/r"}, body=b"")
    photo_server.routes["/t"] = Route(content_type="text/html")
    photo_server.routes["/big"] = Route(body=bytes(2000))
    urls = [
        "ftp://x/",
        photo_server.url("/a"),
        photo_server.url("/r"),
        photo_server.url("/t"),
        photo_server.url("/big"),
    ]
    results = fetch_all(urls, allowed_hosts=[f"127.0.0.1:{photo_server.port}"], max_bytes=1000)
    results.append(refused("http://10.1.2.3/", "image_url_forbidden"))
    assert all(isinstance(r, ImageURLError) for r in results)
    seen = {r.code: r.status for r in results if isinstance(r, ImageURLError)}
    assert seen == STATUS


# -- https: the name is sent as SNI and checked against the certificate -------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for photos.test and alias.test, made with the openssl command line tool."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed: cannot make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=photos.test",
         "-addext", "subjectAltName=DNS:photos.test,DNS:alias.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_is_pinned_with_the_name_as_sni_and_certificate_name(certificate: tuple[Path, Path]):
    cert, key = certificate
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    resolver = FakeResolver({"photos.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    with PhotoServer(tls=server_tls) as server:
        server.routes["/a.jpg"] = Route()
        urls = [
            server.url("/a.jpg", "photos.test"),
            server.url("/a.jpg", "photos.test"),
            server.url("/a.jpg", "other.test"),
        ]
        results = fetch_all(urls, allowed_hosts=["photos.test", "other.test"], resolver=resolver, verify=client_tls)
    assert results[:2] == [JPEG, JPEG]
    # Same address, same port, a kept-alive connection for photos.test: other.test must still get its own
    # handshake, and fail it, since the certificate does not name it.
    assert isinstance(results[2], ImageURLError)
    assert (results[2].code, results[2].details["reason"]) == ("image_url_unreachable", "tls")
    assert server.hosts == [f"photos.test:{server.port}"] * 2
    assert server.server_names == ["photos.test", "other.test"]


def test_https_to_a_name_the_certificate_does_not_match_is_refused(certificate: tuple[Path, Path]):
    cert, key = certificate
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    with PhotoServer(tls=server_tls) as server:
        server.routes["/a.jpg"] = Route()
        error = refused(
            server.url("/a.jpg"),
            "image_url_unreachable",
            verify=ssl.create_default_context(cafile=str(cert)),
            **LOOPBACK,
        )
    assert error.details["reason"] == "tls"
    assert server.requests == []


@pytest.mark.parametrize(
    ("max_pools", "handshakes"), [(1, ["photos.test", "alias.test", "photos.test"]), (2, ["photos.test", "alias.test"])]
)
def test_idle_pools_beyond_the_limit_are_closed(certificate: tuple[Path, Path], max_pools: int, handshakes: list[str]):
    cert, key = certificate
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    transport = _PoolPerServerName(ssl.create_default_context(cafile=str(cert)), max_pools=max_pools)
    resolver = FakeResolver({"photos.test": ["127.0.0.1"], "alias.test": ["127.0.0.1"]})
    with PhotoServer(tls=server_tls) as server:
        server.routes["/a.jpg"] = Route()
        urls = [server.url("/a.jpg", host) for host in ("photos.test", "alias.test", "photos.test")]
        results = fetch_all(urls, allowed_hosts=["photos.test", "alias.test"], resolver=resolver, transport=transport)
    assert results == [JPEG] * 3
    assert server.server_names == handshakes
