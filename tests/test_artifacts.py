"""Artifact refs and stores: LocalAssetStore on a real directory, the adapter on abstractruntime."""

from __future__ import annotations

import hashlib
import threading

import pytest
from abstractruntime.storage.artifacts import FileArtifactStore, InMemoryArtifactStore
from hypothesis import given, settings
from hypothesis import strategies as st

from abstractvision import (
    ArtifactNotFoundError,
    InvalidRequestError,
    LocalAssetStore,
    RuntimeArtifactStoreAdapter,
    is_artifact_ref,
    make_media_ref,
)
from abstractvision.artifacts import MediaStore, artifact_uri, get_artifact_id

PNG_ISH = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
META = {"model": "tiny/sd", "task": "text_to_image", "seed": 7, "params": {"steps": 2}}


def test_ref_shape() -> None:
    ref = make_media_ref("ab" * 16, content_type="image/png", sha256="f" * 64, size_bytes=3)
    assert is_artifact_ref(ref)
    assert ref["uri"] == artifact_uri("ab" * 16) == "abstractvision://artifacts/" + "ab" * 16
    assert get_artifact_id(ref) == "ab" * 16
    for not_a_ref in (None, {}, {"$artifact": ""}, {"$artifact": 5}, "abc", ["$artifact"]):
        assert not is_artifact_ref(not_a_ref)
    with pytest.raises(InvalidRequestError):
        get_artifact_id({"id": "x"})


def test_local_store_round_trip_is_content_addressed_and_idempotent(tmp_path) -> None:
    store = LocalAssetStore(tmp_path)
    assert isinstance(store, MediaStore)
    ref = store.store_bytes(PNG_ISH, content_type="image/png", metadata=META, tags={"a": "b"})
    sha = hashlib.sha256(PNG_ISH).hexdigest()
    assert ref["$artifact"] == sha[:32]
    assert (ref["sha256"], ref["size_bytes"], ref["content_type"]) == (
        sha,
        len(PNG_ISH),
        "image/png",
    )
    assert ref["metadata"]["seed"] == 7
    assert store.load_bytes(ref["$artifact"]) == PNG_ISH
    meta = store.get_metadata(ref["$artifact"])
    assert meta["metadata"]["params"] == {"steps": 2} and meta["tags"] == {"a": "b"}

    again = store.store_bytes(PNG_ISH, content_type="image/png", metadata=META)
    assert again["$artifact"] == ref["$artifact"]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"{sha[:32]}.json", f"{sha[:32]}.png"]


def test_local_store_lists_and_deletes(tmp_path) -> None:
    store = LocalAssetStore(tmp_path)
    ids = [
        store.store_bytes(bytes([i]) * 10, content_type="video/mp4")["$artifact"] for i in range(3)
    ]
    assert {m["artifact_id"] for m in store.list_artifacts()} == set(ids)
    assert store.delete(ids[0]) is True
    assert store.delete(ids[0]) is False
    assert not store.exists(ids[0])
    with pytest.raises(ArtifactNotFoundError):
        store.load_bytes(ids[0])
    assert len(store.list_artifacts()) == 2


@pytest.mark.parametrize(
    "bad_id",
    [
        "../etc/passwd",
        "..%2f..%2fetc",
        "/etc/passwd",
        "A" * 32,
        "0" * 31,
        "0" * 33,
        "0" * 31 + "/",
        "0" * 32 + ".json",
        "",
        None,
        42,
    ],
)
def test_local_store_refuses_ids_that_are_not_its_own(tmp_path, bad_id) -> None:
    store = LocalAssetStore(tmp_path)
    for call in (store.load_bytes, store.get_metadata, store.exists, store.delete):
        with pytest.raises(InvalidRequestError) as info:
            call(bad_id)
        assert info.value.field == "artifact_id"


def test_a_well_formed_unknown_id_is_not_found(tmp_path) -> None:
    with pytest.raises(ArtifactNotFoundError):
        LocalAssetStore(tmp_path).load_bytes("0" * 32)


def test_a_blob_without_metadata_is_not_visible(tmp_path) -> None:
    """A crash between the blob write and the metadata write leaves nothing under a valid id."""
    store = LocalAssetStore(tmp_path)
    artifact_id = hashlib.sha256(PNG_ISH).hexdigest()[:32]
    (tmp_path / f"{artifact_id}.png").write_bytes(PNG_ISH[:10])  # partial, from a dead writer
    (tmp_path / ".tmp-abc").write_bytes(b"half")
    assert not store.exists(artifact_id)
    assert store.list_artifacts() == []
    ref = store.store_bytes(PNG_ISH, content_type="image/png")
    assert store.load_bytes(ref["$artifact"]) == PNG_ISH  # the partial blob was replaced


def test_bytes_that_disagree_with_the_ref_never_load(tmp_path) -> None:
    store = LocalAssetStore(tmp_path)
    ref = store.store_bytes(PNG_ISH, content_type="image/png")
    blob = tmp_path / f"{ref['$artifact']}.png"
    blob.write_bytes(PNG_ISH[::-1])  # same size, other bytes
    with pytest.raises(ArtifactNotFoundError, match="corrupt"):
        store.load_bytes(ref["$artifact"])


def test_concurrent_writers_of_the_same_bytes_agree(tmp_path) -> None:
    store = LocalAssetStore(tmp_path)
    refs: list[dict] = []
    threads = [
        threading.Thread(
            target=lambda: refs.append(store.store_bytes(PNG_ISH, content_type="image/png"))
        )
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r["$artifact"] for r in refs}) == 1
    assert store.load_bytes(refs[0]["$artifact"]) == PNG_ISH
    assert not list(tmp_path.glob(".tmp-*"))


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=80))
def test_any_string_as_id_is_refused_or_not_found_never_read_outside(
    tmp_path_factory, text
) -> None:
    store = LocalAssetStore(tmp_path_factory.mktemp("store"))
    try:
        store.load_bytes(text)
    except (InvalidRequestError, ArtifactNotFoundError):
        pass
    else:  # pragma: no cover - an empty store can't load anything
        pytest.fail(f"loaded {text!r} from an empty store")


@pytest.fixture(params=["file", "memory"])
def runtime_store(request, tmp_path):
    return FileArtifactStore(tmp_path) if request.param == "file" else InMemoryArtifactStore()


def test_runtime_adapter_round_trip_keeps_generation_metadata(runtime_store) -> None:
    store = RuntimeArtifactStoreAdapter(runtime_store, run_id="run-1", tags={"agent": "a1"})
    assert isinstance(store, MediaStore)
    ref = store.store_bytes(PNG_ISH, content_type="image/png", metadata=META, tags={"task": "t2i"})
    assert is_artifact_ref(ref)
    assert ref["sha256"] == hashlib.sha256(PNG_ISH).hexdigest()
    assert store.load_bytes(ref["$artifact"]) == PNG_ISH
    meta = store.get_metadata(ref["$artifact"])
    assert meta["metadata"]["model"] == "tiny/sd"
    assert meta["metadata"]["params"] == {"steps": 2}
    assert meta["tags"]["agent"] == "a1" and meta["tags"]["task"] == "t2i"
    assert meta["run_id"] == "run-1"
    # the runtime's own view of the artifact carries the same facts
    native = runtime_store.get_metadata(ref["$artifact"])
    assert native.metadata["seed"] == 7


def test_runtime_adapter_refuses_traversal_and_reports_missing(runtime_store) -> None:
    store = RuntimeArtifactStoreAdapter(runtime_store)
    with pytest.raises(InvalidRequestError):
        store.load_bytes("../../etc/passwd")
    with pytest.raises(ArtifactNotFoundError):
        store.load_bytes("doesnotexist")
    with pytest.raises(ArtifactNotFoundError):
        store.get_metadata("doesnotexist")


def test_runtime_adapter_needs_a_store_shaped_object() -> None:
    with pytest.raises(TypeError, match="store"):
        RuntimeArtifactStoreAdapter(object())
