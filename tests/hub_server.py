"""A loopback copy of the Hugging Face Hub's download protocol, for real ``huggingface_hub`` runs.

Point ``HF_ENDPOINT`` (or ``endpoint=``) at ``HubServer.url``. It answers what the client asks:

- ``GET /api/models/{repo}[/revision/{rev}]`` (``?blobs=true``): model info with ``sha`` and
  ``siblings`` (size, ``blobId``, ``lfs.sha256``/``size``/``pointerSize``), ``gated``;
- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: a small (git) file answers 200 with ``ETag`` (its
  git blob id), ``X-Repo-Commit`` and ``Content-Length``; an LFS file answers 302 to a CDN URL
  with ``X-Linked-Etag`` (its sha256), ``X-Linked-Size`` and ``X-Repo-Commit``;
- ``GET /cdn/{sha256}``: the LFS bytes, with ``Range: bytes=N-`` answered 206;
- errors as the Hub sends them: 401 + ``X-Error-Code: RepoNotFound`` for an unknown repo,
  401 + ``GatedRepo`` for a gated repo without an accepted token, 404 + ``EntryNotFound`` /
  ``RevisionNotFound``.

Faults for tests: ``cut_after[path] = n`` ends the first CDN response of that file after ``n``
bytes (the client sees a dropped connection); ``corrupt.add(path)`` serves that file with one
byte flipped (its checksum no longer matches); ``missing.add(path)`` answers 404 for a file the
model info lists. ``requests`` logs every request.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["HubRepo", "HubServer", "Request"]

_LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".ckpt", ".pt", ".pth", ".onnx", ".msgpack")


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class HubRepo:
    """A model repo at one commit: path -> bytes (or a file to read)."""

    repo_id: str
    files: dict[str, bytes | Path]
    gated: bool = False
    tokens: set[str] = field(default_factory=set)  # tokens that accepted the licence
    commit: str = ""

    def __post_init__(self) -> None:
        if not self.commit:
            self.commit = hashlib.sha1(self.repo_id.encode(), usedforsecurity=False).hexdigest()
        self._meta: dict[str, dict[str, Any]] = {}

    def data(self, path: str) -> bytes:
        value = self.files[path]
        return value.read_bytes() if isinstance(value, Path) else value

    def meta(self, path: str) -> dict[str, Any]:
        """size, blob id, and for LFS files sha256 (cached)."""
        if path not in self._meta:
            data = self.data(path)
            lfs = path.endswith(_LFS_SUFFIXES) or len(data) > 10 * 1024 * 1024
            entry: dict[str, Any] = {"size": len(data)}
            if lfs:
                sha = hashlib.sha256(data).hexdigest()
                pointer = (
                    "version https://git-lfs.github.com/spec/v1\n"
                    f"oid sha256:{sha}\nsize {len(data)}\n"
                ).encode()
                entry.update(sha256=sha, blob_id=_git_blob_id(pointer), pointer=len(pointer))
            else:
                entry["blob_id"] = _git_blob_id(data)
            self._meta[path] = entry
        return self._meta[path]

    def info(self) -> dict[str, Any]:
        siblings = []
        for path in sorted(self.files):
            meta = self.meta(path)
            sibling: dict[str, Any] = {
                "rfilename": path,
                "size": meta["size"],
                "blobId": meta["blob_id"],
            }
            if "sha256" in meta:
                sibling["lfs"] = {
                    "size": meta["size"],
                    "sha256": meta["sha256"],
                    "pointerSize": meta["pointer"],
                }
            siblings.append(sibling)
        return {
            "_id": self.commit[:24],
            "id": self.repo_id,
            "modelId": self.repo_id,
            "author": self.repo_id.split("/")[0],
            "sha": self.commit,
            "lastModified": "2026-01-01T00:00:00.000Z",
            "private": False,
            "disabled": False,
            "gated": "manual" if self.gated else False,
            "tags": [],
            "downloads": 0,
            "likes": 0,
            "siblings": siblings,
        }


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None
    authorized: bool


class HubServer:
    """``with HubServer([repo, ...]) as hub:`` serves them on ``hub.url`` until the block ends."""

    def __init__(self, repos: list[HubRepo] | None = None) -> None:
        self.repos: dict[str, HubRepo] = {r.repo_id: r for r in repos or []}
        self.cut_after: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.missing: set[str] = set()  # listed in model info, but resolve answers 404
        self.requests: list[Request] = []
        self._by_sha: dict[str, tuple[HubRepo, str]] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def add(self, repo: HubRepo) -> None:
        self.repos[repo.repo_id] = repo

    @property
    def url(self) -> str:
        assert self._httpd is not None, "not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> HubServer:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def served(self, method: str = "GET", prefix: str = "/cdn/") -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]

    def cli_env(self, cache: Path) -> dict[str, str]:
        """The whole environment of a CLI subprocess that downloads from here into ``cache``."""
        return {
            "PATH": os.environ.get("PATH", ""),
            "HF_ENDPOINT": self.url,
            "HF_HUB_CACHE": str(cache),
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        }


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return None

    def do_HEAD(self) -> None:
        self._route(body=False)

    def do_GET(self) -> None:
        self._route(body=True)

    # --- routing ------------------------------------------------------------------------------

    def _route(self, *, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        self.hub.requests.append(
            Request(self.command, path, self.headers.get("Range"), bool(token))
        )
        if path.startswith("/api/models/"):
            return self._info(path[len("/api/models/") :], body)
        if path.startswith("/cdn/"):
            return self._cdn(path[len("/cdn/") :], body)
        parts = path.strip("/").split("/")
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id, revision, file = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            return self._resolve(repo_id, revision, file, token, body)
        self._error(404, "NotFound", "unknown route", body)

    def _repo(self, repo_id: str, body: bool) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found", body)
        return repo

    def _info(self, rest: str, body: bool) -> None:
        repo_id, _, revision = rest.partition("/revision/")
        repo = self._repo(repo_id, body)
        if repo is None:
            return
        if revision and revision not in ("main", repo.commit):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", body)
        self._send(
            200, json.dumps(repo.info()).encode(), {"Content-Type": "application/json"}, body
        )

    def _resolve(self, repo_id: str, revision: str, file: str, token: str, body: bool) -> None:
        repo = self._repo(repo_id, body)
        if repo is None:
            return
        if revision not in ("main", repo.commit):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", body)
        commit = {"X-Repo-Commit": repo.commit}
        if repo.gated and token not in repo.tokens:
            return self._error(
                401,
                "GatedRepo",
                f"Access to model {repo_id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in.",
                body,
                commit,
            )
        if file not in repo.files or file in self.hub.missing:
            return self._error(404, "EntryNotFound", f"{file} does not exist", body, commit)
        meta = repo.meta(file)
        if "sha256" in meta:
            with self.hub._lock:
                self.hub._by_sha[meta["sha256"]] = (repo, file)
            headers = {
                **commit,
                "Location": f"{self.hub.url}/cdn/{meta['sha256']}?repo={repo_id}",
                "X-Linked-Etag": f'"{meta["sha256"]}"',
                "X-Linked-Size": str(meta["size"]),
                "ETag": f'"{meta["blob_id"]}"',
            }
            return self._send(302, b"", headers, body)
        data = self._bytes(repo, file)
        self._send(200, data, {**commit, "ETag": f'"{meta["blob_id"]}"'}, body)

    def _bytes(self, repo: HubRepo, file: str) -> bytes:
        data = repo.data(file)
        if file in self.hub.corrupt and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    def _cdn(self, sha: str, body: bool) -> None:
        found = self.hub._by_sha.get(sha)
        if found is None:
            return self._error(404, "NotFound", "no such object", body)
        repo, file = found
        data = self._bytes(repo, file)
        start = 0
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes="):
            start = int(wanted[len("bytes=") :].split("-")[0] or 0)
        status = 206 if start else 200
        headers = {"ETag": f'"{sha}"', "Accept-Ranges": "bytes"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        chunk = data[start:]
        cut = self.hub.cut_after.pop(file, None) if body else None
        if cut is None:
            return self._send(status, chunk, headers, body)
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(chunk))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(chunk[:cut])
        self.wfile.flush()
        self.close_connection = True  # the client sees the body end early

    # --- answers ------------------------------------------------------------------------------

    def _send(self, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body and data:
            self.wfile.write(data)

    def _error(
        self,
        status: int,
        code: str,
        message: str,
        body: bool,
        extra: dict[str, str] | None = None,
    ) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, **(extra or {})}
        headers["Content-Type"] = "application/json"
        self._send(status, json.dumps({"error": message}).encode(), headers, body)
