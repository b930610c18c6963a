"""The URL guard: address classes, spellings, redirects, byte cap, deadline (real loopback server)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from abstractvision.errors import InvalidRequestError
from abstractvision.net import check_url, check_url_async, fetch_url, fetch_url_async, is_public


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space
        "0.0.0.0",
        "224.0.0.1",  # multicast, which ipaddress calls global
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "2002:7f00:1::",  # 6to4 around 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 around 10.0.0.1
    ],
)
def test_non_public_addresses(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"]
)
def test_public_addresses(address: str) -> None:
    assert is_public(address)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.png",
        "http://localhost/x.png",
        "http://2130706433/x.png",  # decimal 127.0.0.1
        "http://0177.0.0.1/x.png",  # octal
        "http://0x7f.1/x.png",  # hex, short form
        "http://[::1]/x.png",
        "http://[::ffff:127.0.0.1]/x.png",
        "http://169.254.169.254/latest/meta-data",
        "https://user:pw@10.0.0.1/",
    ],
)
def test_check_url_refuses_non_public(url: str) -> None:
    with pytest.raises(InvalidRequestError, match="non-public"):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/a", "gopher://x", "data:,x", "http://", "//h/x"],
)
def test_check_url_refuses_other_schemes(url: str) -> None:
    with pytest.raises(InvalidRequestError, match=r"http:// or https://") as info:
        check_url(url, field="image")
    assert info.value.field == "image"


def test_allowances() -> None:
    assert check_url("http://127.0.0.1:9/x", allow_private=True).addresses == ("127.0.0.1",)
    assert check_url("http://LocalHost/x", allow_hosts=["localhost"]).port == 80
    with pytest.raises(InvalidRequestError):
        check_url("http://127.0.0.1/x", allow_hosts=["localhost"])


@pytest.mark.anyio
async def test_async_check() -> None:
    with pytest.raises(InvalidRequestError, match="non-public"):
        await check_url_async("http://2130706433/")
    checked = await check_url_async("https://[::1]:8443/", allow_private=True)
    assert (checked.host, checked.port) == ("::1", 8443)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        routes = {
            "/ok": (200, {}, b"x" * 100),
            "/big": (200, {}, b"x" * 5000),
            "/hop": (302, {"Location": "/ok"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
            "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
            "/to-meta": (302, {"Location": "http://169.254.169.254/"}, b""),
            "/abs": (302, {"Location": f"http://127.0.0.1:{port}/ok"}, b""),
            "/missing": (404, {}, b"no"),
        }
        if self.path == "/slow":
            self.send_response(200)
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
            return
        if self.path == "/nolength":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"y" * 5000)
            return
        status, headers, body = routes[self.path]
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _fetch(url: str, **options: object) -> bytes:
    kwargs: dict[str, object] = {"max_bytes": 1000, "timeout_s": 5.0, "allow_private": True}
    kwargs.update(options)
    with httpx.Client() as client:
        return fetch_url(client, url, **kwargs)  # type: ignore[arg-type]


def test_fetch_guarded_by_default(server: str) -> None:
    with pytest.raises(InvalidRequestError, match="non-public"):
        _fetch(f"{server}/ok", allow_private=False)


def test_fetch_follows_checked_redirects(server: str) -> None:
    assert _fetch(f"{server}/ok") == b"x" * 100
    assert _fetch(f"{server}/hop") == b"x" * 100
    assert _fetch(f"{server}/abs") == b"x" * 100
    with pytest.raises(InvalidRequestError, match="too many redirects"):
        _fetch(f"{server}/loop")
    with pytest.raises(InvalidRequestError, match="http:// or https://"):
        _fetch(f"{server}/to-file")


def test_redirect_to_private_refused_when_only_host_allowed(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    with pytest.raises(InvalidRequestError, match=r"non-public address 169\.254"):
        _fetch(f"http://localhost:{port}/to-meta", allow_private=False, allow_hosts=["localhost"])


def test_fetch_caps_and_errors(server: str) -> None:
    with pytest.raises(InvalidRequestError, match="at most 1000 bytes"):
        _fetch(f"{server}/big")
    with pytest.raises(InvalidRequestError, match="at most 1000 bytes"):
        _fetch(f"{server}/nolength")
    with pytest.raises(InvalidRequestError, match="HTTP 404"):
        _fetch(f"{server}/missing")
    with pytest.raises(InvalidRequestError, match=r"over 0\.5 s"):  # the timeout fired
        _fetch(f"{server}/slow", timeout_s=0.5)


def test_fetch_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(InvalidRequestError, match="download failed"):
        _fetch(f"http://127.0.0.1:{port}/")


@pytest.mark.anyio
async def test_fetch_async(server: str) -> None:
    async with httpx.AsyncClient() as client:
        body = await fetch_url_async(
            client, f"{server}/hop", max_bytes=1000, timeout_s=5, allow_private=True
        )
        assert body == b"x" * 100
        with pytest.raises(InvalidRequestError, match="non-public"):
            await fetch_url_async(client, f"{server}/ok", max_bytes=1000, timeout_s=5)
        with pytest.raises(InvalidRequestError, match="at most 10 bytes"):
            await fetch_url_async(
                client, f"{server}/ok", max_bytes=10, timeout_s=5, allow_private=True
            )
