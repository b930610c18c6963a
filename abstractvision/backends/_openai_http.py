"""HTTP plumbing of the OpenAI-compatible backend: one pooled client, bounded retries, typed errors.

Retries cover what a retry can fix: 429 and 5xx answers (honouring ``Retry-After`` /
``retry-after-ms``, capped) and failures to connect. A read timeout is not retried: the server
may still be generating, and a second generation would double the cost.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx

from ..control import GenerationControl
from ..errors import BackendError

__all__ = ["HTTPTransport", "RemoteServiceError", "error_from_response", "read_json", "wait"]

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_BACKOFF_BASE_S = 0.5


class RemoteServiceError(BackendError):
    """The remote service answered with an error; ``status_code`` and its own fields are kept."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        error_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.server_message = message
        self.error_type = error_type
        self.code = code
        self.param = param
        where = f", param {param}" if param else ""
        super().__init__(f"the image service answered HTTP {status_code}{where}: {message}")


def error_from_response(response: httpx.Response) -> RemoteServiceError:
    """Read OpenAI's ``{"error": {...}}`` shape, or whatever text the server sent."""
    try:
        response.read()
        body: Any = response.json()
    except (ValueError, httpx.HTTPError):
        body = None
    error = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or str(error)
        return RemoteServiceError(
            response.status_code,
            str(message)[:2000],
            error_type=_str(error.get("type")),
            code=_str(error.get("code")),
            param=_str(error.get("param")),
        )
    if isinstance(error, str):
        return RemoteServiceError(response.status_code, error[:2000])
    text = response.text.strip() if response.is_stream_consumed else ""
    return RemoteServiceError(response.status_code, text[:500] or response.reason_phrase)


def read_json(response: httpx.Response) -> Any:
    """The JSON body, or a BackendError quoting the start of what came instead."""
    try:
        return response.json()
    except ValueError:
        text = response.text[:200]
        raise BackendError(f"the service answered malformed JSON: {text!r}") from None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, or seconds / HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return None if when is None else max(0.0, when.timestamp() - time.time())


def wait(seconds: float, control: GenerationControl | None) -> None:
    """Sleep that a cancellation ends at once (raising GenerationCancelledError)."""
    if control is None:
        time.sleep(seconds)
        return
    woken = threading.Event()
    unregister = control.on_cancel(woken.set)
    try:
        woken.wait(seconds)
    finally:
        unregister()
    control.check()


class HTTPTransport:
    """Thread-safe: one ``httpx.Client`` (and its connection pool) shared by all calls."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        timeout_s: float,
        max_retries: int,
        retry_max_wait_s: float,
        headers: Mapping[str, str],
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_max_wait_s = retry_max_wait_s
        self._headers = {**headers, **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    headers=self._headers,
                    timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0)),
                    follow_redirects=False,  # never carry the API key to another host
                    limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        control: GenerationControl | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries; a non-2xx answer raises RemoteServiceError (stream: caller closes)."""
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        for attempt in range(self.max_retries + 1):
            if control is not None:
                control.check()
            last = attempt == self.max_retries
            try:
                request = self.client.build_request(method, url, **kwargs)
                response = self.client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout) and not last:
                    wait(self._backoff(attempt, None), control)
                    continue
                raise BackendError(
                    f"{method} {url} timed out after {self.timeout_s:g} s ({type(exc).__name__}); "
                    "raise timeout_s if the service is slow"
                ) from None
            except httpx.TransportError as exc:
                if isinstance(exc, (httpx.ConnectError, httpx.RemoteProtocolError)) and not last:
                    wait(self._backoff(attempt, None), control)
                    continue
                raise BackendError(f"{method} {url} failed: {exc}") from None
            if response.status_code < 300:
                if not stream:
                    response.read()
                    response.close()
                return response
            error = error_from_response(response)
            response.close()
            if response.status_code not in RETRY_STATUS or last:
                raise error
            delay = self._backoff(attempt, retry_after_s(response.headers))
            log.warning("%s %s: HTTP %s, retry in %.2f s", method, url, error.status_code, delay)
            wait(delay, control)
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int, asked: float | None) -> float:
        if asked is not None:
            return min(asked, self.retry_max_wait_s)
        return min(self.retry_max_wait_s, _BACKOFF_BASE_S * 2**attempt * (0.5 + random.random()))
