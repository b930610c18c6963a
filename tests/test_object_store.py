"""FsspecAssetStore: the shared store of scaled-out servers, on memory://, file:// and real S3.

S3 runs against moto's S3-compatible HTTP server on loopback, driven by s3fs over real HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from abstractvision import (
    ArtifactNotFoundError,
    FsspecAssetStore,
    InvalidRequestError,
    LocalAssetStore,
    OptionalDependencyMissingError,
)
from abstractvision.artifacts import MediaStore
from abstractvision.object_store import open_store

PNG_ISH = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
META = {"model": "tiny/sd", "task": "text_to_image", "seed": 7, "params": {"steps": 2}}
ROOT = Path(__file__).resolve().parents[1]


def _memory_url() -> str:
    return f"memory://av-{uuid.uuid4().hex}"  # memory:// is process-global: a fresh name each


def _names(store: FsspecAssetStore) -> list[str]:
    """Every object under the store's root, temporary ones included."""
    root = store.url.split("://", 1)[1]
    try:
        return sorted(p.rsplit("/", 1)[-1] for p in store.fs.find(store.fs._strip_protocol(root)))
    except FileNotFoundError:
        return []


def test_memory_round_trip_is_the_local_store_layout_and_document(tmp_path: Path) -> None:
    local = LocalAssetStore(tmp_path)
    store = FsspecAssetStore(_memory_url())
    assert isinstance(store, MediaStore)
    args: dict[str, Any] = {"content_type": "image/png", "metadata": META, "tags": {"a": "b"}}
    ref = store.store_bytes(PNG_ISH, filename="x.png", **args)
    assert ref == local.store_bytes(PNG_ISH, filename="x.png", **args)
    assert ref["$artifact"] == hashlib.sha256(PNG_ISH).hexdigest()[:32]
    assert store.load_bytes(ref["$artifact"]) == PNG_ISH
    meta, local_meta = store.get_metadata(ref["$artifact"]), local.get_metadata(ref["$artifact"])
    assert meta.pop("created_at") and local_meta.pop("created_at")
    assert meta == local_meta
    assert _names(store) == sorted(p.name for p in tmp_path.iterdir())
    assert store.exists(ref["$artifact"]) and [
        m["artifact_id"] for m in store.list_artifacts()
    ] == [ref["$artifact"]]
    assert store.delete(ref["$artifact"]) is True and store.delete(ref["$artifact"]) is False
    assert (
        not store.exists(ref["$artifact"]) and store.list_artifacts() == [] and _names(store) == []
    )
    with pytest.raises(ArtifactNotFoundError, match="no artifact"):
        store.load_bytes(ref["$artifact"])
    # a file:// store reads a folder LocalAssetStore wrote, and the other way round
    ref = local.store_bytes(PNG_ISH, content_type="image/png")
    assert FsspecAssetStore(f"file://{tmp_path}").load_bytes(ref["$artifact"]) == PNG_ISH
    other = FsspecAssetStore(f"file://{tmp_path}").store_bytes(b"v" * 9, content_type="video/mp4")
    assert local.load_bytes(other["$artifact"]) == b"v" * 9


def test_file_store_written_by_another_process_is_read_here(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'shared'}"
    code = (
        "import json, sys; from abstractvision import FsspecAssetStore;"
        f"s = FsspecAssetStore({url!r});"
        "print(json.dumps(s.store_bytes(sys.stdin.buffer.read(), content_type='image/png',"
        f" metadata={META!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=PNG_ISH, capture_output=True, check=True, cwd=ROOT
    )
    ref = json.loads(out.stdout)
    store = FsspecAssetStore(url)
    assert store.load_bytes(ref["$artifact"]) == PNG_ISH
    assert store.get_metadata(ref["$artifact"])["metadata"] == META
    assert LocalAssetStore(tmp_path / "shared").load_bytes(ref["$artifact"]) == PNG_ISH
    assert _names(store) == sorted([f"{ref['$artifact']}.json", f"{ref['$artifact']}.png"])


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_concurrent_writers_of_the_same_bytes_make_one_artifact(
    tmp_path: Path, scheme: str
) -> None:
    url = _memory_url() if scheme == "memory" else f"file://{tmp_path}"
    stores = [FsspecAssetStore(url) for _ in range(8)]  # as if eight replicas
    refs: list[dict[str, Any]] = []
    barrier = threading.Barrier(len(stores))

    def write(store: FsspecAssetStore) -> None:
        barrier.wait()
        refs.append(store.store_bytes(PNG_ISH, content_type="image/png", metadata=META))

    threads = [threading.Thread(target=write, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(refs) == 8 and len({json.dumps(r, sort_keys=True) for r in refs}) == 1
    artifact_id = refs[0]["$artifact"]
    assert stores[0].load_bytes(artifact_id) == PNG_ISH
    assert _names(stores[0]) == [f"{artifact_id}.json", f"{artifact_id}.png"]  # no temp files


def test_a_failed_write_leaves_no_visible_artifact(monkeypatch: pytest.MonkeyPatch) -> None:
    """A memory filesystem cannot fail for real, so its PUT is made to fail."""
    store = FsspecAssetStore(_memory_url())
    artifact_id = hashlib.sha256(PNG_ISH).hexdigest()[:32]
    real_put = store.fs.pipe_file
    calls: list[str] = []

    def failing_put(path: str, data: bytes, **kwargs: Any) -> None:
        calls.append(path)
        if len(calls) == fail_at:
            raise OSError(28, "No space left on device")
        real_put(path, data, **kwargs)

    monkeypatch.setattr(store.fs, "pipe_file", failing_put)
    fail_at = 1  # the blob
    with pytest.raises(OSError, match="No space"):
        store.store_bytes(PNG_ISH, content_type="image/png")
    assert calls[0].endswith(".png")
    assert not store.exists(artifact_id) and store.list_artifacts() == [] and _names(store) == []
    calls.clear()
    fail_at = 2  # the metadata document, after the blob
    with pytest.raises(OSError):
        store.store_bytes(PNG_ISH, content_type="image/png")
    assert not store.exists(artifact_id) and store.list_artifacts() == []
    with pytest.raises(ArtifactNotFoundError):
        store.load_bytes(artifact_id)
    calls.clear()
    fail_at = 0
    ref = store.store_bytes(PNG_ISH, content_type="image/png")
    assert store.load_bytes(ref["$artifact"]) == PNG_ISH


def test_a_full_disk_leaves_no_artifact_and_no_temp_file(tmp_path: Path) -> None:
    """A real fault: the writer's file size limit (RLIMIT_FSIZE) stops the blob write mid-file."""
    url = f"file://{tmp_path}"
    code = (
        "import resource, signal, sys; from abstractvision import FsspecAssetStore;"
        f"s = FsspecAssetStore({url!r});"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000));"
        "s.store_bytes(b'x' * 5000, content_type='image/png')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0 and "File too large" in out.stderr, out.stderr
    assert list(tmp_path.iterdir()) == []  # no blob, no metadata, no temp file
    assert not FsspecAssetStore(url).exists(hashlib.sha256(b"x" * 5000).hexdigest()[:32])


def test_bytes_or_metadata_that_disagree_never_load() -> None:
    store = FsspecAssetStore(_memory_url())
    ref = store.store_bytes(PNG_ISH, content_type="image/png")
    root = store.fs._strip_protocol(store.url)
    blob, meta = f"{root}/{ref['$artifact']}.png", f"{root}/{ref['$artifact']}.json"
    store.fs.pipe_file(blob, PNG_ISH[::-1])  # same size, other bytes
    with pytest.raises(ArtifactNotFoundError, match="sha256"):
        store.load_bytes(ref["$artifact"])
    store.fs.pipe_file(meta, b"{not json")
    with pytest.raises(ArtifactNotFoundError, match="corrupt metadata"):
        store.get_metadata(ref["$artifact"])
    document = {"sha256": ref["sha256"], "content_file": "../elsewhere.png"}
    store.fs.pipe_file(meta, json.dumps(document).encode())
    with pytest.raises(ArtifactNotFoundError, match="content_file"):
        store.load_bytes(ref["$artifact"])


@pytest.mark.parametrize(
    "bad_id",
    ["../etc/passwd", "/etc/passwd", "A" * 32, "0" * 31, "0" * 32 + ".json", "", None, 42],
)
def test_ids_that_are_not_content_addresses_are_refused(bad_id: Any) -> None:
    store = FsspecAssetStore(_memory_url())
    for call in (store.load_bytes, store.get_metadata, store.exists, store.delete):
        with pytest.raises(InvalidRequestError) as info:
            call(bad_id)
        assert info.value.field == "artifact_id"


def test_open_store_and_missing_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalAssetStore)
    assert isinstance(open_store(_memory_url()), FsspecAssetStore)
    with pytest.raises(InvalidRequestError, match="URL") as info:
        open_store(str(tmp_path), {"secret": "s3cr3t"})
    assert "s3cr3t" not in str(info.value)
    with pytest.raises(InvalidRequestError):
        FsspecAssetStore("nosuchprotocol://x")
    if importlib.util.find_spec("gcsfs") is None:
        with pytest.raises(OptionalDependencyMissingError, match="'gcsfs'") as missing:
            FsspecAssetStore("gs://bucket/prefix")
        assert str(missing.value).endswith("pip install gcsfs")  # no extra of ours has it
    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if the s3 extra were not installed
    with pytest.raises(OptionalDependencyMissingError, match=r"abstractvision\[s3\]"):
        FsspecAssetStore("s3://bucket/prefix")


# --- S3 over HTTP: moto's server on loopback ---------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; credentials come from the usual AWS variables (moto takes any)."""
    import s3fs

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"av-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True).mkdir(bucket)
    return bucket


def test_s3_round_trip_over_http(tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> None:
    options = {"endpoint_url": s3_endpoint, "key": "x", "secret": "y"}
    store = FsspecAssetStore(f"s3://{s3_bucket}/prefix", storage_options=options)
    # a second replica with its own client and listing cache
    other = FsspecAssetStore(
        f"s3://{s3_bucket}/prefix/", storage_options={**options, "skip_instance_cache": True}
    )
    assert store.fs is not other.fs
    assert other.list_artifacts() == []
    ref = store.store_bytes(PNG_ISH, content_type="image/png", metadata=META)
    assert ref == LocalAssetStore(tmp_path).store_bytes(
        PNG_ISH, content_type="image/png", metadata=META
    )
    assert other.exists(ref["$artifact"])  # not hidden by the listing taken before the write
    assert other.load_bytes(ref["$artifact"]) == PNG_ISH
    assert [m["metadata"] for m in other.list_artifacts()] == [META]
    assert _names(store) == sorted([f"{ref['$artifact']}.json", f"{ref['$artifact']}.png"])
    assert other.delete(ref["$artifact"]) and not store.exists(ref["$artifact"])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _mcp_helpers() -> ModuleType:
    """tests/mcp/conftest.py under its own name: a bare ``conftest`` import is ambiguous here."""
    spec = importlib.util.spec_from_file_location(
        "_mcp_test_helpers", Path(__file__).parent / "mcp" / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.anyio
async def test_mcp_server_on_an_s3_store(s3_endpoint: str, s3_bucket: str) -> None:
    from mcp_server.config import load_config

    helpers = _mcp_helpers()
    url = f"s3://{s3_bucket}/artifacts"
    cfg = load_config(["--store", url, "--store-option", f"endpoint_url={s3_endpoint}"], {})
    async with helpers.connect(cfg, helpers.FaultBackend(0)) as client:
        result = await client.call_tool("text_to_image", {"prompt": "x", "steps": 1})
        assert not result.is_error, helpers.text(result)
        ref = result.structured_content
        read = await client.read_resource(ref["uri"])
    data = base64.b64decode(read.contents[0].blob)
    assert read.contents[0].mime_type == "image/png"
    assert hashlib.sha256(data).hexdigest() == ref["sha256"]
    # another front end on the same bucket resolves the ref
    replica = FsspecAssetStore(url, storage_options={"endpoint_url": s3_endpoint})
    assert replica.load_bytes(ref["$artifact"]) == data
