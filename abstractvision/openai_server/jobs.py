"""Video jobs: generation in a background thread, polled by id, cancelled by DELETE.

A job's progress comes from the engine's step reports. Finished jobs are kept ``ttl_s`` seconds
(their bytes live in memory until then), and at most ``max_jobs`` exist at once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..control import GenerationControl, ProgressEvent
from ..errors import AbstractVisionError, GenerationCancelledError
from ..types import GeneratedAsset
from .errors import ApiError, classify

__all__ = ["VideoJob", "VideoJobs"]

log = logging.getLogger(__name__)

Runner = Callable[[str, dict[str, Any], GenerationControl], GeneratedAsset]


@dataclass
class VideoJob:
    """One video generation and what OpenAI's ``video`` object reports about it."""

    id: str
    task: str
    model: str
    prompt: str | None
    size: str | None
    seconds: int | None
    control: GenerationControl = field(default_factory=GenerationControl)
    status: str = "queued"
    progress: int = 0
    created_at: int = field(default_factory=lambda: int(time.time()))
    completed_at: int | None = None
    error: dict[str, str] | None = None
    asset: GeneratedAsset | None = None

    def to_json(self) -> dict[str, Any]:
        meta = self.asset.metadata if self.asset is not None else {}
        size = self.size
        if size is None and "width" in meta:
            size = f"{meta['width']}x{meta['height']}"
        seconds = self.seconds
        if meta.get("num_frames") and meta.get("fps"):
            seconds = max(1, round(meta["num_frames"] / meta["fps"]))
        return {
            "id": self.id,
            "object": "video",
            "model": self.model,
            "status": self.status,
            "progress": self.progress,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
            "expires_at": None,
            "error": self.error,
            "prompt": self.prompt,
            "remixed_from_video_id": None,
            "seconds": str(seconds) if seconds is not None else None,
            "size": size,
        }


class VideoJobs:
    """The job table. ``runner(task, params, control)`` does the work in a pool thread."""

    def __init__(
        self, runner: Runner, *, workers: int = 1, max_jobs: int = 64, ttl_s: float = 3600.0
    ) -> None:
        self._runner = runner
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="av-video")
        self._jobs: dict[str, VideoJob] = {}
        self._lock = threading.Lock()
        self.max_jobs = max_jobs
        self.ttl_s = ttl_s

    def submit(self, task: str, params: dict[str, Any], **info: Any) -> VideoJob:
        job = VideoJob(id=f"video_{uuid.uuid4().hex}", task=task, **info)
        job.control = GenerationControl(lambda event: self._progress(job, event))
        with self._lock:
            self._prune()
            if len(self._jobs) >= self.max_jobs:
                raise ApiError(
                    429, f"{self.max_jobs} video jobs exist; delete some or wait", type="rate_limit"
                )
            self._jobs[job.id] = job
        self._pool.submit(self._work, job, params)
        return job

    def _progress(self, job: VideoJob, event: ProgressEvent) -> None:
        if event.fraction is not None and job.status == "in_progress":
            job.progress = min(99, int(event.fraction * 100))

    def _work(self, job: VideoJob, params: dict[str, Any]) -> None:
        if job.control.cancelled:
            return
        job.status = "in_progress"
        try:
            asset = self._runner(job.task, params, job.control)
        except GenerationCancelledError:
            job.status, job.error = "failed", {"code": "cancelled", "message": "cancelled"}
        except Exception as exc:
            if not isinstance(exc, AbstractVisionError):
                log.exception("video job %s failed", job.id)
            error = classify(exc)
            job.status = "failed"
            job.error = {"code": error.code or error.type, "message": error.message}
        else:
            job.asset, job.progress, job.status = asset, 100, "completed"
        job.completed_at = int(time.time())

    def _prune(self) -> None:
        horizon = time.time() - self.ttl_s
        for key, job in list(self._jobs.items()):
            if job.completed_at is not None and job.completed_at < horizon:
                del self._jobs[key]

    def get(self, job_id: str) -> VideoJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no video job {job_id!r}", param="video_id", code="not_found")
        return job

    def list(self) -> list[VideoJob]:
        with self._lock:
            self._prune()
            return sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)

    def delete(self, job_id: str) -> VideoJob:
        """Cancel (if running) and forget the job."""
        job = self.get(job_id)
        job.control.cancel()
        with self._lock:
            self._jobs.pop(job_id, None)
        return job

    def shutdown(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.control.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
