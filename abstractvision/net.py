"""Guarded HTTP fetches: URLs that an untrusted party chose, fetched without becoming an SSRF hole.

Only http(s) is accepted. The host is resolved once and every address it resolves to must be
public (not loopback, private, link-local, shared, multicast, reserved or unspecified, including
IPv4 addresses hidden in IPv6 forms and decimal/octal/hex IPv4 spellings, which the resolver
turns into the same addresses) unless private addresses or that host are allowed. The connection
then goes to the checked address (no second lookup to rebind), every redirect hop is checked the
same way, the body is capped while it streams and the whole fetch has one deadline.

A refusal or failure raises ``InvalidRequestError`` naming ``field``: for a tool argument that is
the caller's mistake; a backend fetching a server-chosen URL turns it into a ``BackendError``.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

import httpx

from .errors import InvalidRequestError

__all__ = [
    "CheckedURL",
    "check_url",
    "check_url_async",
    "fetch_url",
    "fetch_url_async",
    "is_public",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SCHEMES = ("http", "https")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64): checked as well."""
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [a for a in found if a is not None]


def is_public(address: str | IPAddress) -> bool:
    """True when ``address`` is a globally routable unicast address (and so is what it embeds)."""
    ip = ipaddress.ip_address(address.split("%")[0] if isinstance(address, str) else address)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d, nothing more
            return is_public(ip.ipv4_mapped)
        if embedded and not all(is_public(a) for a in embedded):
            return False
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_private
    )


@dataclass(frozen=True)
class CheckedURL:
    """A URL whose host resolved to ``addresses``, all allowed; connect to ``addresses[0]``."""

    url: str
    parts: SplitResult
    host: str
    port: int
    addresses: tuple[str, ...]


def _parse(url: str, field: str) -> tuple[SplitResult, str, int]:
    try:
        parts = urlsplit(url.strip())
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:
        raise InvalidRequestError(field, url, f"is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
        raise InvalidRequestError(field, url, "must be an http:// or https:// URL with a host")
    return parts, parts.hostname, port


def _verdict(
    url: str,
    field: str,
    parts: SplitResult,
    host: str,
    port: int,
    infos: list[tuple[object, ...]],
    allow_private: bool,
    allow_hosts: Collection[str],
) -> CheckedURL:
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))  # type: ignore[index]
    if not addresses:
        raise InvalidRequestError(field, url, f"cannot resolve {host}")
    trusted = allow_private or host.lower() in {h.lower() for h in allow_hosts}
    if not trusted:
        for address in addresses:
            if not is_public(address):
                raise InvalidRequestError(
                    field,
                    url,
                    f"{host} resolves to the non-public address {address}; only public "
                    "addresses are fetched unless private addresses or this host are allowed",
                )
    return CheckedURL(url, parts, host, port, addresses)


def check_url(
    url: str,
    *,
    allow_private: bool = False,
    allow_hosts: Collection[str] = (),
    field: str = "url",
) -> CheckedURL:
    """Parse and resolve ``url``; raise InvalidRequestError unless every address is allowed."""
    parts, host, port = _parse(url, field)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidRequestError(field, url, f"cannot resolve {host} ({exc})") from None
    return _verdict(url, field, parts, host, port, list(infos), allow_private, allow_hosts)


async def check_url_async(
    url: str,
    *,
    allow_private: bool = False,
    allow_hosts: Collection[str] = (),
    field: str = "url",
) -> CheckedURL:
    """``check_url`` with the lookup off the event loop."""
    import anyio

    parts, host, port = _parse(url, field)
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidRequestError(field, url, f"cannot resolve {host} ({exc})") from None
    return _verdict(url, field, parts, host, port, list(infos), allow_private, allow_hosts)


def _pinned(client: httpx.Client | httpx.AsyncClient, checked: CheckedURL) -> httpx.Request:
    """A GET to the checked address itself; Host header and TLS name stay the original host."""
    address = checked.addresses[0]
    netloc = f"[{address}]" if ":" in address else address
    target = checked.parts._replace(netloc=f"{netloc}:{checked.port}").geturl()
    extensions = {"sni_hostname": checked.host} if checked.parts.scheme.lower() == "https" else {}
    host_header = checked.parts.netloc.rpartition("@")[2]  # never forward userinfo
    headers = {"Host": host_header, "Accept-Encoding": _ACCEPT_ENCODING}
    return client.build_request("GET", target, headers=headers, extensions=extensions)


class _Fetch:
    """Shared bookkeeping of one fetch: deadline, hop count, byte cap, uniform errors."""

    def __init__(self, url: str, field: str, max_bytes: int, timeout_s: float, hops: int) -> None:
        self.url, self.field, self.max_bytes = url, field, max_bytes
        self.timeout_s, self.hops = timeout_s, hops
        self.deadline = time.monotonic() + timeout_s

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.error(f"download took over {self.timeout_s:g} s")
        return left

    def error(self, reason: str) -> InvalidRequestError:
        return InvalidRequestError(self.field, self.url, reason)

    def next_url(self, response: httpx.Response, current: str) -> str | None:
        """The redirect target, or None when ``response`` is the answer (which must be 200)."""
        if response.is_redirect and "location" in response.headers:
            self.hops -= 1
            if self.hops < 0:
                raise self.error("too many redirects")
            return urljoin(current, response.headers["location"])
        if response.status_code != 200:
            raise self.error(f"the server answered HTTP {response.status_code}")
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise self.error(f"must be at most {self.max_bytes} bytes (server says {length})")
        return None

    def add(self, body: bytearray, chunk: bytes) -> None:
        body += chunk
        if len(body) > self.max_bytes:
            raise self.error(f"must be at most {self.max_bytes} bytes")
        self.remaining()

    def decoder(self, response: httpx.Response) -> _Decoder:
        """The body's decoder: at most one known content coding, refused before any byte."""
        codings = [
            c.strip().lower()
            for value in response.headers.get_list("content-encoding")
            for c in value.split(",")
            if c.strip() and c.strip().lower() != "identity"
        ]
        if len(codings) > 1:
            raise self.error(
                f"Content-Encoding {', '.join(codings)} stacks {len(codings)} codings; "
                "at most one (gzip or deflate) is accepted"
            )
        if codings and codings[0] not in _CODINGS:
            raise self.error(
                f"Content-Encoding {codings[0]} is not supported; accepted: gzip, deflate"
            )
        return _Decoder(self, codings[0] if codings else None)


_CODINGS = ("gzip", "x-gzip", "deflate")
_ACCEPT_ENCODING = "gzip, deflate"


class _Decoder:
    """Inflates a body chunk by chunk, never producing more than the cap allows plus one byte.

    ``zlib``'s ``max_length`` bounds each call's output, so a small body that inflates to
    gigabytes costs at most ``max_bytes`` of memory before it is refused.
    """

    def __init__(self, state: _Fetch, coding: str | None) -> None:
        self.state, self.coding = state, coding
        self.body = bytearray()
        self._zlib: Any = None
        self._head = b""

    def _start(self, chunk: bytes) -> Any:
        if self.coding in ("gzip", "x-gzip"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        head = self._head + chunk  # deflate: zlib-wrapped as specified, or raw as some send it
        if len(head) < 2:
            self._head = head
            return None
        wrapped = head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)

    def feed(self, chunk: bytes) -> None:
        if self.coding is None:
            self.state.add(self.body, chunk)
            return
        if self._zlib is None:
            self._zlib = self._start(chunk)
            if self._zlib is None:
                return
            chunk, self._head = self._head + chunk, b""
        try:
            while chunk and not self._zlib.eof:
                limit = self.state.max_bytes - len(self.body) + 1
                self.state.add(self.body, self._zlib.decompress(chunk, limit))
                chunk = self._zlib.unconsumed_tail
        except zlib.error as exc:
            raise self.state.error(f"corrupt {self.coding} body ({exc})") from None

    def finish(self) -> bytes:
        if self.coding is not None:
            if self._zlib is None:
                self._zlib = self._start(b"") or zlib.decompressobj(-zlib.MAX_WBITS)
                self.feed(self._head)
            if not self._zlib.eof:
                raise self.state.error(f"truncated {self.coding} body")
        return bytes(self.body)


def fetch_url(
    client: httpx.Client,
    url: str,
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool = False,
    allow_hosts: Collection[str] = (),
    max_redirects: int = 3,
    field: str = "url",
) -> bytes:
    """GET ``url`` through the guard: every hop checked, body capped, one overall deadline."""
    state = _Fetch(url, field, max_bytes, timeout_s, max_redirects)
    current = url
    try:
        while True:
            checked = check_url(
                current, allow_private=allow_private, allow_hosts=allow_hosts, field=field
            )
            request = _pinned(client, checked)
            request.extensions["timeout"] = httpx.Timeout(state.remaining()).as_dict()
            response = client.send(request, stream=True, follow_redirects=False)
            try:
                target = state.next_url(response, current)
                if target is None:
                    decoder = state.decoder(response)
                    for chunk in response.iter_raw():
                        decoder.feed(chunk)
                    return decoder.finish()
            finally:
                response.close()
            current = target
    except httpx.TimeoutException:
        raise state.error(f"download took over {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise state.error(f"download failed ({exc})") from None


async def fetch_url_async(
    client: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool = False,
    allow_hosts: Collection[str] = (),
    max_redirects: int = 3,
    field: str = "url",
) -> bytes:
    """``fetch_url`` for an ``httpx.AsyncClient`` (same checks, same errors)."""
    state = _Fetch(url, field, max_bytes, timeout_s, max_redirects)
    current = url
    try:
        while True:
            checked = await check_url_async(
                current, allow_private=allow_private, allow_hosts=allow_hosts, field=field
            )
            request = _pinned(client, checked)
            request.extensions["timeout"] = httpx.Timeout(state.remaining()).as_dict()
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                target = state.next_url(response, current)
                if target is None:
                    decoder = state.decoder(response)
                    async for chunk in response.aiter_raw():
                        decoder.feed(chunk)
                    return decoder.finish()
            finally:
                await response.aclose()
            current = target
    except httpx.TimeoutException:
        raise state.error(f"download took over {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise state.error(f"download failed ({exc})") from None
