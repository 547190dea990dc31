"""Both vector store adapters behave the same: Qdrant Edge on disk and qdrant-client local mode."""

from __future__ import annotations

import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from common.schemas import SearchFilter, SearchFusion, SearchMode
from common.settings import Settings
from common.sparse import SparseEncoder
from common.vectorstore import (
    ChunkPoint,
    EdgeStore,
    ServerStore,
    VectorStore,
    open_store,
)

DIM = 8
REPO = Path(__file__).resolve().parents[2]


def vector(rng: random.Random) -> list[float]:
    """A random vector of size DIM."""
    return [rng.gauss(0.0, 1.0) for _ in range(DIM)]


def chunks(
    tenant: str, document_id: str, n: int, rng: random.Random, text: str = "text"
) -> list[ChunkPoint]:
    """Chunks of one document, with ids made the way callers make them."""
    return [
        ChunkPoint(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{document_id}/{i}")),
            vector=vector(rng),
            payload={
                "tenant": tenant,
                "document_id": document_id,
                "title": f"title {document_id}",
                "text": f"{text} {i}",
                "chunk_index": i,
                "metadata": {"source": "test", "tags": ["a", "b"]},
                "page": i + 1,
            },
        )
        for i in range(n)
    ]


@pytest.fixture(params=["edge", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    """An ensured, empty store of each adapter."""
    opened: VectorStore
    if request.param == "edge":
        opened = EdgeStore(tmp_path / "vectors")
    else:
        opened = ServerStore(QdrantClient(location=":memory:"), "chunks")
    opened.ensure(DIM)
    yield opened
    opened.close()


@pytest.fixture
def rng() -> random.Random:
    """A seeded random generator."""
    return random.Random(1234)


def test_search_finds_the_nearest_point_first(store: VectorStore, rng: random.Random) -> None:
    """A stored vector used as the query comes back first, with its payload intact."""
    points = chunks("acme", "doc-1", 30, rng)
    store.upsert(points)
    target = points[17]
    hits = store.search("acme", target.vector, limit=5)
    assert len(hits) == 5
    assert hits[0].id == target.id
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].payload == target.payload
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_search_never_returns_other_tenants(store: VectorStore, rng: random.Random) -> None:
    """Even an exact match belonging to another tenant is filtered out."""
    mine = chunks("acme", "doc-1", 5, rng)
    theirs = chunks("globex", "doc-1", 5, rng)
    store.upsert(mine + theirs)
    hits = store.search("acme", theirs[0].vector, limit=50)
    assert {h.id for h in hits} == {p.id for p in mine}
    assert all(h.payload["tenant"] == "acme" for h in hits)
    assert store.search("initech", theirs[0].vector, limit=5) == []


def test_search_restricted_to_documents(store: VectorStore, rng: random.Random) -> None:
    """document_ids limits hits to those documents; an empty list finds nothing."""
    for doc in ("doc-1", "doc-2", "doc-3"):
        store.upsert(chunks("acme", doc, 4, rng))
    store.upsert(chunks("globex", "doc-2", 4, rng))
    hits = store.search("acme", vector(rng), limit=50, document_ids=["doc-1", "doc-3"])
    assert len(hits) == 8
    assert {h.payload["document_id"] for h in hits} == {"doc-1", "doc-3"}
    hits = store.search("acme", vector(rng), limit=50, document_ids=["doc-2"])
    assert {(h.payload["tenant"], h.payload["document_id"]) for h in hits} == {("acme", "doc-2")}
    assert store.search("acme", vector(rng), limit=50, document_ids=[]) == []


def test_upserting_the_same_ids_replaces_points(store: VectorStore, rng: random.Random) -> None:
    """Re-ingesting a document leaves one point per chunk, carrying the new payload."""
    store.upsert(chunks("acme", "doc-1", 10, rng, text="old"))
    store.upsert(chunks("acme", "doc-1", 10, rng, text="new"))
    assert store.count("acme") == 10
    hits = store.search("acme", vector(rng), limit=50)
    assert len(hits) == 10
    assert all(h.payload["text"].startswith("new") for h in hits)


def test_delete_document_removes_only_that_document(store: VectorStore, rng: random.Random) -> None:
    """Other documents, and the same document id of another tenant, are kept."""
    store.upsert(chunks("acme", "doc-1", 6, rng))
    store.upsert(chunks("acme", "doc-2", 4, rng))
    store.upsert(chunks("globex", "doc-1", 3, rng))
    store.delete_document("acme", "doc-1")
    assert store.count("acme", "doc-1") == 0
    assert store.count("acme", "doc-2") == 4
    assert store.count("globex", "doc-1") == 3
    hits = store.search("acme", vector(rng), limit=50)
    assert {h.payload["document_id"] for h in hits} == {"doc-2"}
    store.delete_document("acme", "missing")
    assert store.count("acme") == 4


def test_count_per_tenant_and_document(store: VectorStore, rng: random.Random) -> None:
    """Counts are exact per tenant and per document of a tenant."""
    assert store.count("acme") == 0
    store.upsert(chunks("acme", "doc-1", 7, rng))
    store.upsert(chunks("acme", "doc-2", 2, rng))
    store.upsert(chunks("globex", "doc-1", 5, rng))
    store.upsert([])
    assert store.count("acme") == 9
    assert store.count("acme", "doc-1") == 7
    assert store.count("acme", "doc-2") == 2
    assert store.count("globex") == 5
    assert store.count("globex", "doc-2") == 0


def test_ensure_is_idempotent_and_checks_the_size(store: VectorStore, rng: random.Random) -> None:
    """A second ensure keeps the data; a different vector size is refused."""
    store.upsert(chunks("acme", "doc-1", 3, rng))
    store.ensure(DIM)
    assert store.count("acme") == 3
    with pytest.raises(ValueError, match="size"):
        store.ensure(DIM * 2)


def test_concurrent_upserts_and_searches(store: VectorStore) -> None:
    """Four threads writing and searching at once all succeed and lose nothing."""

    def work(worker: int) -> int:
        rng = random.Random(worker)
        found = 0
        for batch in range(10):
            store.upsert(chunks("acme", f"doc-{worker}-{batch}", 5, rng))
            found += len(store.search("acme", vector(rng), limit=5))
            store.count("acme", f"doc-{worker}-{batch}")
        return found

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(4)))
    assert all(found >= 10 * 5 - 4 for found in results)
    assert store.count("acme") == 4 * 10 * 5


def test_edge_store_reopens_its_folder(tmp_path: Path, rng: random.Random) -> None:
    """Points survive closing the shard and opening the folder again."""
    points = chunks("acme", "doc-1", 20, rng)
    first = EdgeStore(tmp_path / "vectors")
    first.ensure(DIM)
    first.upsert(points)
    first.close()
    second = EdgeStore(tmp_path / "vectors")
    second.ensure(DIM)
    try:
        assert second.count("acme") == 20
        assert second.search("acme", points[3].vector, limit=1)[0].id == points[3].id
    finally:
        second.close()


def test_edge_store_keeps_writes_of_a_killed_process(tmp_path: Path) -> None:
    """A process that dies right after upsert, without close, loses nothing."""
    folder = tmp_path / "vectors"
    script = f"""
import os, random
from tests.common.test_vectorstore import DIM, chunks
from common.vectorstore import EdgeStore
store = EdgeStore({str(folder)!r})
store.ensure(DIM)
store.upsert(chunks("acme", "doc-1", 12, random.Random(7)))
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)
    store = EdgeStore(folder)
    store.ensure(DIM)
    try:
        assert store.count("acme", "doc-1") == 12
    finally:
        store.close()


def test_edge_store_must_be_ensured_first(tmp_path: Path) -> None:
    """Using the store before ensure fails clearly."""
    with pytest.raises(RuntimeError, match="ensure"):
        EdgeStore(tmp_path / "vectors").count("acme")


def test_open_store_without_url_is_embedded(tmp_path: Path) -> None:
    """No Qdrant URL means the Edge shard under the data folder."""
    store = open_store(Settings(data_dir=tmp_path, qdrant_url=""))
    assert isinstance(store, EdgeStore)
    store.ensure(DIM)
    store.close()
    assert (tmp_path / "vectors" / "edge_config.json").exists()


def sparse_points(store: VectorStore, rng: random.Random) -> list[ChunkPoint]:
    """Three documents with real BM25 vectors, random dense vectors, and metadata to filter on."""
    encoder = SparseEncoder(avg_doc_len=8)
    texts = {
        "valves": "Pressure valve XK-4471 failed at the pumping station",
        "glacier": "The glacier retreated two kilometres in ten years",
        "owls": "Pellucid owls nest in hollow birch trees near the lake",
    }
    points = [
        ChunkPoint(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"acme/{doc}")),
            vector=vector(rng),
            payload={
                "tenant": "acme",
                "document_id": doc,
                "title": doc.title(),
                "text": text,
                "metadata": {
                    "team": "ops" if doc == "valves" else "science",
                    "year": n + 2020,
                    "urgent": doc == "valves",
                },
            },
            sparse=encoder.encode_document(text),
        )
        for n, (doc, text) in enumerate(texts.items())
    ]
    store.upsert(points)
    return points


def test_sparse_search_matches_exact_terms(store: VectorStore, rng: random.Random) -> None:
    """A rare identifier is found by its terms alone, and stop words find nothing."""
    sparse_points(store, rng)
    encoder = SparseEncoder()
    hits = store.search(
        "acme", None, 3, sparse=encoder.encode_query("xk-4471"), mode=SearchMode.SPARSE
    )
    assert [h.payload["document_id"] for h in hits] == ["valves"]
    none = store.search("acme", None, 3, sparse=encoder.encode_query("the"), mode=SearchMode.SPARSE)
    assert none == []


@pytest.mark.parametrize("fusion", list(SearchFusion))
def test_hybrid_search_fuses_both_sides(
    store: VectorStore, rng: random.Random, fusion: SearchFusion
) -> None:
    """Hybrid finds a document by its dense vector alone and another by its terms alone."""
    points = sparse_points(store, rng)
    encoder = SparseEncoder()
    by_dense = store.search(
        "acme",
        points[1].vector,
        3,
        sparse=encoder.encode_query("unrelated words"),
        mode=SearchMode.HYBRID,
        fusion=fusion,
    )
    assert by_dense[0].payload["document_id"] == "glacier"
    by_terms = store.search(
        "acme",
        vector(rng),
        3,
        sparse=encoder.encode_query("owls nest"),
        mode=SearchMode.HYBRID,
        fusion=fusion,
    )
    assert by_terms[0].payload["document_id"] == "owls"


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (SearchFilter(document_ids=["owls", "glacier"]), {"owls", "glacier"}),
        (SearchFilter(titles=["Valves"]), {"valves"}),
        (SearchFilter(metadata={"team": "science"}), {"owls", "glacier"}),
        (SearchFilter(metadata={"team": "science", "year": 2021}), {"glacier"}),
        (SearchFilter(metadata={"year": 2022.0}), {"owls"}),
        (SearchFilter(metadata={"urgent": True}), {"valves"}),
        (SearchFilter(metadata={"urgent": False, "team": "science"}), {"owls", "glacier"}),
        (SearchFilter(metadata={"team": "nobody"}), set()),
        (SearchFilter(document_ids=[]), set()),
    ],
)
@pytest.mark.parametrize("mode", list(SearchMode))
def test_filters_exclude_other_documents(
    store: VectorStore,
    rng: random.Random,
    flt: SearchFilter,
    expected: set[str],
    mode: SearchMode,
) -> None:
    """Every mode returns only chunks that meet every condition of the filter."""
    sparse_points(store, rng)
    query = SparseEncoder().encode_query("valve glacier owls nest")
    hits = store.search("acme", vector(rng), 10, sparse=query, mode=mode, filter=flt)
    assert {h.payload["document_id"] for h in hits} == expected


def test_chunks_lists_every_chunk_of_one_document(store: VectorStore, rng: random.Random) -> None:
    """All chunks of the document over several scroll pages, none of another document."""
    store.upsert(chunks("acme", "big", 600, rng) + chunks("acme", "other", 3, rng))
    store.upsert(chunks("globex", "big", 2, rng))
    found = store.chunks("acme", "big")
    assert sorted(h.payload["chunk_index"] for h in found) == list(range(600))
    assert {h.payload["document_id"] for h in found} == {"big"}


def versioned(
    document_id: str, version: str, n: int, rng: random.Random, staged: bool = True
) -> list[ChunkPoint]:
    """Chunks of one version of a document, staged as an ingest writes them."""
    points = []
    for point in chunks("acme", f"{document_id}", n, rng, text=f"{version} text"):
        payload = {**point.payload, "version": version}
        if staged:
            payload["state"] = "staged"
        point_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{point.id}/{version}"))
        points.append(ChunkPoint(point_id, point.vector, payload))
    return points


def test_staged_chunks_serve_only_once_committed(store: VectorStore, rng: random.Random) -> None:
    """A new version stays out of searches and re-indexing until committed; then it replaces
    the old version whole, and a discarded version leaves the live one as it was."""
    store.upsert(versioned("doc-1", "v1", 3, rng, staged=False))
    store.upsert(versioned("doc-1", "v2", 5, rng))

    def served() -> set[str]:
        hits = store.search("acme", vector(rng), 50)
        assert {h.payload["version"] for h in hits} == {
            h.payload["version"] for h in store.chunks("acme", "doc-1")
        }
        return {h.payload["version"] for h in hits}

    assert served() == {"v1"}
    store.discard_version("acme", "doc-1", "v2")
    assert store.count("acme", "doc-1") == 3
    assert served() == {"v1"}

    store.upsert(versioned("doc-1", "v3", 4, rng))
    store.discard_version("acme", "doc-1", "v1")  # a committed version is not discarded
    assert store.count("acme", "doc-1") == 7
    store.commit_version("acme", "doc-1", "v3")
    assert served() == {"v3"}
    assert store.count("acme", "doc-1") == 4
    assert all("state" not in h.payload for h in store.chunks("acme", "doc-1"))


def grouped(
    document_id: str, n: int, groups: list[str] | None, rng: random.Random
) -> list[ChunkPoint]:
    """Chunks of one document with these access groups (None: no field, as before groups)."""
    points = chunks("acme", document_id, n, rng)
    if groups is None:
        return points
    return [ChunkPoint(p.id, p.vector, {**p.payload, "access_groups": groups}) for p in points]


@pytest.mark.parametrize("mode", list(SearchMode))
def test_groups_admit_ungrouped_and_shared_chunks_only(
    store: VectorStore, rng: random.Random, mode: SearchMode
) -> None:
    """A search with groups finds ungrouped chunks (no field, or an empty list) and chunks
    sharing a group, in every mode; without groups it finds all."""
    encoder = SparseEncoder(avg_doc_len=4)
    points = (
        grouped("hr", 4, ["hr"], rng)
        + grouped("eng", 4, ["eng", "ops"], rng)
        + grouped("legacy", 4, None, rng)
        + grouped("open", 4, [], rng)
    )
    store.upsert(
        [
            ChunkPoint(p.id, p.vector, p.payload, encoder.encode_document("shared words"))
            for p in points
        ]
    )
    query = encoder.encode_query("shared words")

    def found(groups: list[str] | None) -> set[str]:
        hits = store.search("acme", vector(rng), 50, sparse=query, mode=mode, groups=groups)
        return {h.payload["document_id"] for h in hits}

    assert found(None) == {"hr", "eng", "legacy", "open"}
    assert found([]) == {"legacy", "open"}
    assert found(["ops"]) == {"eng", "legacy", "open"}
    assert found(["hr", "sales"]) == {"hr", "legacy", "open"}


@pytest.mark.parametrize("mode", list(SearchMode))
def test_top_k_stays_full_when_most_chunks_are_hidden(
    store: VectorStore, rng: random.Random, mode: SearchMode
) -> None:
    """The group condition is inside the query: 90 % hidden chunks, closer to the query than
    any visible one, still leave top-k full of visible chunks."""
    encoder = SparseEncoder(avg_doc_len=4)
    query_vector = vector(rng)
    hidden = [
        ChunkPoint(p.id, [x + rng.gauss(0, 0.01) for x in query_vector], p.payload)
        for p in grouped("secret", 180, ["hr"], rng)
    ]
    visible = grouped("public", 20, ["eng"], rng)
    store.upsert(
        [
            ChunkPoint(p.id, p.vector, p.payload, encoder.encode_document("quarterly report"))
            for p in hidden + visible
        ]
    )
    hits = store.search(
        "acme",
        query_vector,
        10,
        sparse=encoder.encode_query("quarterly report"),
        mode=mode,
        groups=["eng"],
    )
    assert len(hits) == 10
    assert {h.payload["document_id"] for h in hits} == {"public"}


def test_set_groups_changes_visibility_without_new_vectors(
    store: VectorStore, rng: random.Random
) -> None:
    """set_groups rewrites the payload field only: same points, same vectors, new visibility;
    with a version, only that version's chunks change."""
    points = versioned("doc-1", "v1", 3, rng, staged=False)
    staged = versioned("doc-1", "v2", 2, rng)
    store.upsert(points + staged + grouped("other", 2, ["hr"], rng))
    before = {h.id for h in store.chunks("acme", "doc-1")}

    store.set_groups("acme", "doc-1", ["hr"])
    hits = store.search("acme", points[0].vector, 1, document_ids=["doc-1"], groups=["hr"])
    assert hits[0].id == points[0].id and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert store.search("acme", points[0].vector, 10, groups=["eng"]) == []
    assert {h.id for h in store.chunks("acme", "doc-1")} == before
    assert store.count("acme", "doc-1") == 5

    store.set_groups("acme", "doc-1", ["eng"], version="v2")
    store.commit_version("acme", "doc-1", "v2")
    assert {
        h.payload["document_id"] for h in store.search("acme", vector(rng), 10, groups=["eng"])
    } == {"doc-1"}
    store.set_groups("acme", "doc-1", [])
    assert {h.payload["document_id"] for h in store.search("acme", vector(rng), 10, groups=[])} == {
        "doc-1"
    }
    # Another document keeps its groups.
    assert all(h.payload["access_groups"] == ["hr"] for h in store.chunks("acme", "other"))
