"""Downloading a photo given as an http(s) URL, safe against SSRF.

The host is resolved here and every address it resolves to is checked before anything connects. The request then
goes to the checked address itself, with the name in the Host header and, for https, as the SNI name the
certificate must match: a second DNS answer (DNS rebinding) cannot send the download elsewhere. Redirects are
followed by hand, each target checked exactly like the first URL.

Failures raise `ImageURLError` with one of these codes:

===============================  ======  ====================================================================
code                             status  when
===============================  ======  ====================================================================
``image_url_invalid``            422     not http(s), no host, user info, bad port, malformed
``image_url_forbidden``          400     the host is (or resolves to) an address that is not globally routable
``image_url_unreachable``        422     DNS, connect, TLS or read failure, timeout, or a non-2xx answer
``image_url_too_large``          413     more than ``max_bytes``
``image_url_not_image``          415     not an image content type, empty, or not a known image format
``image_url_too_many_redirects`` 422     more than ``max_redirects`` redirects
===============================  ======  ====================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import ssl
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from faceauth.kit.errors import AppError
from faceauth.kit.imagetypes import sniff_content_type

log = logging.getLogger(__name__)

USER_AGENT = "faceauth-image-fetch"

Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ImageURLError(AppError):
    """A photo URL that could not be used. ``details["url"]`` is the URL without user info, query or fragment."""

    def __init__(self, status: int, code: str, message: str, url: str, **details: Any) -> None:
        super().__init__(status, code, message, details={"url": redact_url(url), **details})


def _invalid(url: str, reason: str, **details: Any) -> ImageURLError:
    return ImageURLError(
        422, "image_url_invalid", f"the image URL is not usable: {reason}", url, reason=reason, **details
    )


def _forbidden(url: str, reason: str, **details: Any) -> ImageURLError:
    return ImageURLError(
        400,
        "image_url_forbidden",
        "the image URL points to an address that may not be fetched",
        url,
        reason=reason,
        **details,
    )


def _unreachable(url: str, reason: str, **details: Any) -> ImageURLError:
    return ImageURLError(
        422, "image_url_unreachable", f"the image could not be downloaded ({reason})", url, reason=reason, **details
    )


def _not_image(url: str, reason: str, **details: Any) -> ImageURLError:
    return ImageURLError(
        415, "image_url_not_image", f"the URL does not give an image ({reason})", url, reason=reason, **details
    )


def redact_url(url: str) -> str:
    """`url` without user info, query and fragment (they may hold credentials or presigned tokens)."""
    text = url if isinstance(url, str) else repr(url)
    try:
        parts = urlsplit(text)
        text = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    except ValueError:
        text = text.split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    return text[:2048]


# -- which addresses may be connected to -------------------------------------------------------------------------

_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "168.63.129.16",  # Azure wire server (a public-looking address, reachable only inside Azure)
    )
)

# Checked in order (the first match names the reason); the standard library's flags are the backstop below.
_RANGES: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = [
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "cgnat"),
        ("169.254.0.0/16", "link-local"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("198.18.0.0/15", "benchmark"),
        ("192.88.99.0/24", "reserved"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fc00::/7", "private"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "private"),  # deprecated site-local
        ("ff00::/8", "multicast"),
        ("64:ff9b:1::/48", "private"),  # local-use NAT64
        ("100::/64", "reserved"),
        ("2001::/32", "reserved"),  # Teredo
        ("2001:2::/48", "benchmark"),
        ("2001:10::/28", "reserved"),
        ("2001:20::/28", "reserved"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "reserved"),
    )
]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def forbidden_reason(ip: str) -> str | None:
    """None if `ip` may be connected to; else a short reason ("loopback", "private", "link-local", "metadata",
    "reserved", ...). Only globally routable unicast addresses pass."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "invalid"
    return _address_reason(address)


def _address_reason(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address):
        address = ipaddress.IPv6Address(int(address))  # drop a zone id: it does not change the range
        if address in _METADATA:
            return "metadata"
        # The IPv4 address inside an IPv4-mapped, NAT64 or 6to4 address is where the packets end up.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return _address_reason(embedded)
    elif address in _METADATA:
        return "metadata"
    for network, reason in _RANGES:
        if address in network:
            return reason
    if address.version == 6 and address in _V4_COMPATIBLE:
        # Deprecated IPv4-compatible form: refused whatever it embeds.
        return _address_reason(ipaddress.IPv4Address(int(address))) or "reserved"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved or address.is_private or not address.is_global:
        return "reserved"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the operating system resolves `host` to, in its order of preference."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# -- URLs -------------------------------------------------------------------------------------------------------

_HOSTNAME = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_AUTHORITY = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://([^/?#]*)")


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    host: str  # ASCII (IDNA), lower case, IPv6 without brackets
    port: int
    ip: IPAddress | None  # set when the host is an IP literal


def _parse(text: str, original: str, extra: dict[str, str]) -> _Target:
    if not isinstance(text, str):
        raise _invalid(original, "not a string", **extra)
    try:
        url = httpx.URL(text)
        host = url.raw_host.decode("ascii").lower()
        port = url.port
    except (httpx.InvalidURL, ValueError, UnicodeError):
        raise _invalid(original, "malformed", **extra) from None
    if url.scheme not in _DEFAULT_PORTS:
        raise _invalid(original, "scheme must be http or https", **extra)
    if not host:
        raise _invalid(original, "no host", **extra)
    authority = _AUTHORITY.match(text)
    if url.userinfo or (authority and "@" in authority.group(1)):
        raise _invalid(original, "user info is not accepted", **extra)
    if port is not None and not 0 < port < 65536:
        raise _invalid(original, "bad port", **extra)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
        if len(host) > 253 or not _HOSTNAME.fullmatch(host):
            raise _invalid(original, "bad host name", **extra) from None
    return _Target(url, host, port or _DEFAULT_PORTS[url.scheme], ip)


def _allow_key(entry: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 literal -> (normalised host, port or None)."""
    text = entry.strip().lower()
    port: str | None = None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"allowed host is not host or host:port: {entry!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text
    try:
        ip = ipaddress.ip_address(host)
        host = str(ip)
    except ValueError:
        try:
            host = httpx.URL(f"http://{host}/").raw_host.decode("ascii").lower()
        except (httpx.InvalidURL, UnicodeError):
            raise ValueError(f"allowed host is not a host name: {entry!r}") from None
    if not host or (port is not None and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ValueError(f"allowed host is not host or host:port: {entry!r}")
    return host, int(port) if port is not None else None


def _cause_is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# -- the fetcher -------------------------------------------------------------------------------------------------


class ImageFetcher:
    """Downloads photos from http(s) URLs that resolve to public addresses only (or to `allowed_hosts`).

    One fetcher holds one connection pool: create it once, share it, `aclose` it at shutdown.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 15.0,
        max_bytes: int = 10 * 1024 * 1024,
        max_redirects: int = 3,
        allowed_hosts: Iterable[str] = (),
        resolver: Resolver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        if timeout_s <= 0 or max_bytes <= 0 or max_redirects < 0:
            raise ValueError("timeout_s and max_bytes must be positive, max_redirects not negative")
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self._allowed = frozenset(_allow_key(h) for h in allowed_hosts)
        self._resolve = resolver or system_resolver
        # The transport is the connection pool, shared by all fetches. Requests do not go through an
        # httpx.AsyncClient: its send logs every URL in full (a query may hold a presigned token), and it would
        # keep cookies and read proxy settings from the environment, none of which is wanted here.
        self._transport = transport or _PoolPerServerName(verify)
        self._timeouts = httpx.Timeout(timeout_s).as_dict()
        # identity: the size limit applies to what is kept, and no decompression bomb can inflate it.
        self._headers = {"User-Agent": USER_AGENT, "Accept": "image/*", "Accept-Encoding": "identity"}

    async def __aenter__(self) -> ImageFetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def fetch(self, url: str) -> bytes:
        """The image at `url` (after at most `max_redirects` redirects), or `ImageURLError`."""
        try:
            try:
                # The whole download is bounded, not only each read: a server dripping bytes cannot hold us.
                async with asyncio.timeout(self.timeout_s):
                    return await self._follow(url)
            except TimeoutError:
                raise _unreachable(url, "timeout") from None
        except ImageURLError as exc:
            log.info("image URL refused: %s (%s)", redact_url(url), exc.code)
            raise

    async def _follow(self, url: str) -> bytes:
        current = url
        for hop in range(self.max_redirects + 1):
            extra = {"redirect_url": redact_url(current)} if hop else {}
            target = _parse(current, url, extra)
            response = await self._send(url, target, extra)
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    try:
                        current = str(target.url.join(response.headers["location"]))
                    except (httpx.InvalidURL, ValueError, UnicodeError):
                        raise _invalid(url, "bad redirect location", **extra) from None
                    continue
                if not response.is_success:
                    raise _unreachable(url, "upstream error", upstream_status=response.status_code, **extra)
                return await self._read(url, response, extra)
            finally:
                await response.aclose()
        raise ImageURLError(
            422,
            "image_url_too_many_redirects",
            f"more than {self.max_redirects} redirects",
            url,
            max_redirects=self.max_redirects,
        )

    def _is_allowed(self, target: _Target) -> bool:
        host = str(target.ip) if target.ip is not None else target.host
        return (host, None) in self._allowed or (host, target.port) in self._allowed

    async def _addresses(self, url: str, target: _Target, extra: dict[str, str]) -> list[IPAddress]:
        """The addresses to connect to: all checked (unless the host is allowed), in the resolver's order."""
        if target.ip is not None:
            answers: list[str] = [str(target.ip)]
        else:
            try:
                answers = list(await self._resolve(target.host, target.port))
            except (OSError, UnicodeError):
                raise _unreachable(url, "dns", **extra) from None
        allowed = self._is_allowed(target)
        addresses: list[IPAddress] = []
        for answer in answers:
            reason = None if allowed else forbidden_reason(answer)
            if reason is not None:
                # Any bad answer refuses the host: which answer gets used is not ours to pick.
                raise _forbidden(url, reason, **extra)
            try:
                address = ipaddress.ip_address(answer)
            except ValueError:
                continue
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise _unreachable(url, "dns", **extra)
        return addresses

    async def _send(self, url: str, target: _Target, extra: dict[str, str]) -> httpx.Response:
        addresses = await self._addresses(url, target, extra)
        headers = {**self._headers, "Host": target.url.netloc.decode("ascii")}
        extensions: dict[str, Any] = {"timeout": self._timeouts}
        if target.url.scheme == "https" and target.ip is None:
            # The name, not the address, is sent as SNI and must match the certificate.
            extensions["sni_hostname"] = target.host
        failure: httpx.HTTPError | None = None
        for address in addresses:
            try:
                pinned = target.url.copy_with(host=str(address))
                request = httpx.Request("GET", pinned, headers=headers, extensions=extensions)
                response = await self._transport.handle_async_request(request)
                response.request = request
                return response
            except httpx.InvalidURL:
                continue  # an address with a zone id cannot be put in a URL
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failure = exc  # the next address may answer (say IPv4 after an unrouted IPv6)
            except httpx.TimeoutException:
                raise _unreachable(url, "timeout", **extra) from None
            except httpx.HTTPError:
                raise _unreachable(url, "protocol error", **extra) from None
        if failure is not None and _cause_is_tls(failure):
            raise _unreachable(url, "tls", **extra) from None
        if isinstance(failure, httpx.ConnectTimeout):
            raise _unreachable(url, "timeout", **extra) from None
        raise _unreachable(url, "connect", **extra) from None

    async def _read(self, url: str, response: httpx.Response, extra: dict[str, str]) -> bytes:
        content_type = response.headers.get("content-type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if media and not (media.startswith("image/") or media == "application/octet-stream"):
            raise _not_image(url, "content type", content_type=media[:100], **extra)
        too_large = ImageURLError(
            413,
            "image_url_too_large",
            f"the image is larger than {self.max_bytes} bytes",
            url,
            max_bytes=self.max_bytes,
            **extra,
        )
        length = response.headers.get("content-length", "")
        if length.isascii() and length.strip().isdigit() and int(length) > self.max_bytes:
            raise too_large
        body = bytearray()

        def keep(chunk: bytes) -> None:
            # At most one byte past the limit is kept: enough to know it is exceeded.
            body.extend(chunk[: self.max_bytes + 1 - len(body)])
            if len(body) > self.max_bytes:
                raise too_large

        try:
            if response.is_stream_consumed:
                keep(response.content)  # a transport that built the answer in memory: httpx has read it already
            else:
                # Raw: the body as sent, never decompressed.
                async with contextlib.aclosing(response.aiter_raw()) as chunks:
                    async for chunk in chunks:
                        keep(chunk)
        except httpx.TimeoutException:
            raise _unreachable(url, "timeout", **extra) from None
        except httpx.HTTPError:
            raise _unreachable(url, "read error", **extra) from None
        if not body:
            raise _not_image(url, "empty body", **extra)
        if sniff_content_type(bytes(body[:16])) == "application/octet-stream":
            raise _not_image(url, "unknown image format", **extra)
        return bytes(body)


# -- connection pools ------------------------------------------------------------------------------------------


class _PoolPerServerName(httpx.AsyncBaseTransport):
    """A connection pool per TLS server name.

    Requests address an IP, and httpcore pools connections by scheme, IP and port: with one pool, a connection
    whose certificate was checked for one name could carry a request for another name on the same address.
    Plain http and IP-literal https share one pool. Idle pools beyond `max_pools` are closed, oldest first.
    """

    def __init__(self, verify: ssl.SSLContext | bool, max_pools: int = 32) -> None:
        # One TLS context for all pools: building one (loading the CA bundle) is slow.
        self._ssl = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify, trust_env=False)
        self._pools: OrderedDict[str, httpx.AsyncHTTPTransport] = OrderedDict()
        self._busy: Counter[str] = Counter()
        self._max_pools = max_pools

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = str(request.extensions.get("sni_hostname") or "") if request.url.scheme == "https" else ""
        pool = self._pools.get(key)
        if created := pool is None:
            pool = self._pools[key] = httpx.AsyncHTTPTransport(verify=self._ssl, trust_env=False)
        self._pools.move_to_end(key)
        self._busy[key] += 1  # no await since the lookup: a pool in use is never taken for idle
        try:
            if created:
                await self._close_idle(keep=self._max_pools)
            response = await pool.handle_async_request(request)
        except BaseException:
            self._release(key)
            raise
        stream = _ReleasingStream(response.stream, lambda: self._release(key))  # type: ignore[arg-type]
        return httpx.Response(
            response.status_code, headers=response.headers, stream=stream, extensions=response.extensions
        )

    def _release(self, key: str) -> None:
        self._busy[key] -= 1
        if self._busy[key] <= 0:
            del self._busy[key]

    async def _close_idle(self, keep: int) -> None:
        while len(self._pools) > keep:
            # Picked and removed with no await between, so no other request can start using it meanwhile.
            key = next((k for k in self._pools if not self._busy[k]), None)
            if key is None:
                return
            await self._pools.pop(key).aclose()

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), OrderedDict()
        for pool in pools:
            await pool.aclose()


class _ReleasingStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()
