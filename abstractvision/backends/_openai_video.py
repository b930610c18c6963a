"""The OpenAI video jobs protocol, client side: create, poll with progress, download, clean up.

A job we stop waiting for (cancelled, failed download, timed out) is deleted on the service so
it does not keep running and billing. The thumbnail (``variant=thumbnail``) becomes the asset's
preview when the service has one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import httpx

from .. import media
from ..control import GenerationControl
from ..errors import AbstractVisionError, BackendError
from ..types import GeneratedAsset
from ._openai_http import HTTPTransport, read_json, wait

if TYPE_CHECKING:
    from .openai_compatible import OpenAICompatibleBackendConfig

__all__ = ["VideoJobClient"]

log = logging.getLogger(__name__)

_THUMBNAIL_MAX_BYTES = 4 * 1024 * 1024


class VideoJobClient:
    """One video job at a time per call; holds no state between calls (thread-safe)."""

    def __init__(self, http: HTTPTransport, config: OpenAICompatibleBackendConfig) -> None:
        self.http = http
        self.config = config

    def run(
        self,
        base: str,
        send: dict[str, Any],
        control: GenerationControl,
        *,
        model: Any,
        seed: int | None,
    ) -> GeneratedAsset:
        started = time.perf_counter()
        job = read_json(self.http.request("POST", base, control=control, **send))
        job_id = str(job.get("id") or "") if isinstance(job, dict) else ""
        if not job_id:
            raise BackendError(f"POST {base} answered without a job id: {str(job)[:200]}")
        finished = False
        try:
            job = self._poll(f"{base}/{job_id}", job, control)
            data, mime = self._download(f"{base}/{job_id}/content", control)
            finished = True
        finally:
            if not finished:
                self._abandon(f"{base}/{job_id}")
        preview = self._thumbnail(f"{base}/{job_id}/content")
        meta = _video_meta(job, data, model, seed)
        meta["generate_s"] = round(time.perf_counter() - started, 4)
        return GeneratedAsset(
            "video", data, mime, meta, preview[0] if preview else None, preview and preview[1]
        )

    def _poll(self, path: str, job: dict[str, Any], control: GenerationControl) -> dict[str, Any]:
        deadline = time.monotonic() + self.config.video_timeout_s
        while True:
            status = str(job.get("status", ""))
            progress = job.get("progress")
            if isinstance(progress, (int, float)) and not isinstance(progress, bool):
                control.report(int(progress), 100, f"{status} {int(progress)}%")
            if status == "completed":
                return job
            if status in ("failed", "cancelled", "expired"):
                error = job.get("error") or {}
                message = error.get("message") if isinstance(error, dict) else str(error)
                raise BackendError(f"the video job {status}: {message or 'no reason given'}")
            if time.monotonic() > deadline:
                raise BackendError(
                    f"the video job did not finish in {self.config.video_timeout_s:g} s"
                )
            wait(self.config.poll_interval_s, control)
            job = read_json(self.http.request("GET", path, control=control))
            if not isinstance(job, dict):
                raise BackendError(f"GET {path} did not answer a job object")

    def _download(self, path: str, control: GenerationControl) -> tuple[bytes, str]:
        response = self.http.request("GET", path, control=control, stream=True)
        try:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > self.config.max_result_bytes:
                    raise BackendError(
                        f"the video is larger than max_result_bytes={self.config.max_result_bytes}"
                    )
            kind = response.headers.get("content-type", "").split(";")[0].strip()
        except httpx.HTTPError as exc:
            raise BackendError(f"downloading {path} failed: {exc}") from None
        finally:
            response.close()
        return bytes(body), _video_mime(bytes(body), kind)

    def _thumbnail(self, path: str) -> tuple[bytes, str] | None:
        """The service's poster/preview image (``variant=thumbnail``) if it has one; best effort."""
        try:
            response = self.http.request("GET", path, params={"variant": "thumbnail"})
            data = response.content
            if len(data) > _THUMBNAIL_MAX_BYTES:
                return None
            return data, media.inspect_image(data, field="thumbnail").mime_type
        except AbstractVisionError as exc:
            log.debug("no thumbnail from %s: %s", path, exc)
            return None

    def _abandon(self, path: str) -> None:
        """Delete a job we stop waiting for, so it does not keep running and billing."""
        try:
            self.http.request("DELETE", path)
        except AbstractVisionError as exc:
            log.info("could not delete abandoned video job %s: %s", path, exc)


def _video_mime(data: bytes, declared: str) -> str:
    if data[4:8] == b"ftyp":
        return "video/mp4"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] == b"GIF8":
        return "image/gif"
    if declared.startswith("video/"):
        return declared
    raise BackendError(f"the service returned no video (content-type {declared or 'none'})")


def _video_meta(job: dict[str, Any], data: bytes, model: Any, seed: int | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"video_id": job.get("id"), "model": job.get("model") or model}
    if seed is not None:
        meta["seed"] = seed
    with contextlib.suppress(AbstractVisionError, ImportError):
        info = media.video_info(data)
        meta.update(width=info.width, height=info.height, num_frames=info.n_frames, fps=info.fps)
    if "width" not in meta and isinstance(job.get("size"), str) and "x" in job["size"]:
        width, _, height = job["size"].partition("x")
        if width.isdigit() and height.isdigit():
            meta.update(width=int(width), height=int(height))
    if job.get("seconds") is not None:
        meta["seconds"] = job["seconds"]
    return {k: v for k, v in meta.items() if v is not None}
