"""Vector store port with two Qdrant adapters: an embedded Qdrant Edge shard and a Qdrant server.

Points are document chunks with a dense vector named "dense" (cosine). Every read and delete is
scoped to one tenant through the "tenant" payload field. Hybrid search (a sparse vector named
"sparse" with the IDF modifier, fused by RRF through the query API) is meant to be added in the
`_*_point` and `_*_query` helpers of each adapter and in their collection configs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import qdrant_edge as edge
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

if TYPE_CHECKING:
    from common.settings import Settings

DENSE = "dense"
TENANT = "tenant"
DOCUMENT_ID = "document_id"


@dataclass(frozen=True)
class ChunkPoint:
    """One chunk to store: a UUID string id, its dense embedding and its payload."""

    id: str
    vector: list[float]
    payload: dict[str, Any]


@dataclass(frozen=True)
class SearchHit:
    """One search result: the point id, its similarity score and its payload."""

    id: str
    score: float
    payload: dict[str, Any]


class VectorStore(Protocol):
    """What the service needs from a vector store; call `ensure` once before anything else."""

    def ensure(self, dim: int) -> None:
        """Create the collection for vectors of size `dim` if missing; check it if present."""
        ...

    def upsert(self, points: Sequence[ChunkPoint]) -> None:
        """Insert points, replacing those whose id already exists."""
        ...

    def delete_document(self, tenant: str, document_id: str) -> None:
        """Remove every chunk of one document of one tenant."""
        ...

    def search(
        self,
        tenant: str,
        vector: Sequence[float],
        limit: int,
        document_ids: Sequence[str] | None = None,
    ) -> list[SearchHit]:
        """Nearest chunks of the tenant, best first, optionally only from the given documents."""
        ...

    def count(self, tenant: str, document_id: str | None = None) -> int:
        """Exact number of chunks of the tenant, or of one of its documents."""
        ...

    def close(self) -> None:
        """Release the store; it cannot be used afterwards."""
        ...


def _check_dim(expected: int, dim: int) -> None:
    if expected != dim:
        raise ValueError(f"vector store holds vectors of size {expected}, not {dim}")


# Sizes in KB of vectors (~13k and ~40k vectors of size 384): the unindexed tail stays small
# enough to scan, and each optimize step stays short, which matters since it holds the GIL.
_EDGE_OPTIMIZERS = edge.EdgeOptimizersConfig(indexing_threshold=20_000, max_segment_size=60_000)


def _edge_filter(tenant: str, document_ids: Sequence[str] | None = None) -> edge.Filter:
    must: list[edge.ConditionType] = [edge.FieldCondition(TENANT, match=edge.MatchValue(tenant))]
    if document_ids is not None:
        must.append(edge.FieldCondition(DOCUMENT_ID, match=edge.MatchAny(list(document_ids))))
    return edge.Filter(must=must)


def _edge_point(point: ChunkPoint) -> edge.Point:
    vectors: dict[str, edge.NamedVector] = {DENSE: list(point.vector)}
    return edge.Point(point.id, vectors, point.payload)


def _edge_query(
    tenant: str, vector: Sequence[float], limit: int, document_ids: Sequence[str] | None
) -> edge.QueryRequest:
    return edge.QueryRequest(
        limit=limit,
        query=edge.Query.Nearest(list(vector), using=DENSE),
        filter=_edge_filter(tenant, document_ids),
        with_payload=True,
    )


class EdgeStore:
    """Embedded Qdrant Edge shard in a folder: one process only, safe across its threads."""

    def __init__(self, path: Path | str) -> None:
        """Remember the shard folder; `ensure` opens or creates the shard."""
        self._path = Path(path)
        self._dim: int | None = None
        self._shard: edge.EdgeShard | None = None
        # Calls into the shard are thread-safe; the lock keeps each write, its flush and its
        # optimize step together, and keeps `close` from racing a write.
        self._lock = threading.Lock()

    def ensure(self, dim: int) -> None:
        """Load the shard from its folder, or create it there, for vectors of size `dim`."""
        with self._lock:
            if self._dim is not None:
                _check_dim(self._dim, dim)
                return
            config = edge.EdgeConfig(
                vectors={DENSE: edge.EdgeVectorParams(size=dim, distance=edge.Distance.Cosine)},
                optimizers=_EDGE_OPTIMIZERS,
            )
            if (self._path / "edge_config.json").exists():
                # Raises if the stored vectors do not match `config`.
                shard = edge.EdgeShard.load(str(self._path), config)
            else:
                self._path.mkdir(parents=True, exist_ok=True)
                shard = edge.EdgeShard.create(str(self._path), config)
            shard.update(
                edge.UpdateOperation.create_field_index(
                    TENANT, edge.KeywordIndexParams(is_tenant=True)
                )
            )
            shard.update(
                edge.UpdateOperation.create_field_index(DOCUMENT_ID, edge.PayloadSchemaType.Keyword)
            )
            shard.flush()
            self._shard, self._dim = shard, dim

    def upsert(self, points: Sequence[ChunkPoint]) -> None:
        """Insert or replace points, then flush them to disk."""
        if points:
            self._write(edge.UpdateOperation.upsert_points([_edge_point(p) for p in points]))

    def delete_document(self, tenant: str, document_id: str) -> None:
        """Remove every chunk of one document of one tenant, then flush."""
        flt = _edge_filter(tenant, [document_id])
        self._write(edge.UpdateOperation.delete_points_by_filter(flt))

    def search(
        self,
        tenant: str,
        vector: Sequence[float],
        limit: int,
        document_ids: Sequence[str] | None = None,
    ) -> list[SearchHit]:
        """Nearest chunks of the tenant, best first, optionally only from the given documents."""
        if document_ids is not None and not document_ids:
            return []
        points = self._opened().query(_edge_query(tenant, vector, limit, document_ids))
        return [SearchHit(str(p.id), p.score, dict(p.payload or {})) for p in points]

    def count(self, tenant: str, document_id: str | None = None) -> int:
        """Exact number of chunks of the tenant, or of one of its documents."""
        flt = _edge_filter(tenant, None if document_id is None else [document_id])
        return self._opened().count(edge.CountRequest(exact=True, filter=flt))

    def close(self) -> None:
        """Flush and close the shard, releasing its folder for another process."""
        with self._lock:
            if self._shard is not None:
                self._shard.flush()
                self._shard.close()
                self._shard, self._dim = None, None

    def _opened(self) -> edge.EdgeShard:
        shard = self._shard
        if shard is None:
            raise RuntimeError(f"vector store {self._path} is not open: call ensure() first")
        return shard

    def _write(self, operation: edge.UpdateOperation) -> None:
        with self._lock:
            shard = self._opened()
            shard.update(operation)
            shard.flush()
            # Edge has no background optimizer: without this step nothing is ever indexed.
            # It returns at once unless a segment crossed a threshold.
            shard.optimize()


def _server_filter(tenant: str, document_ids: Sequence[str] | None = None) -> models.Filter:
    must: list[models.Condition] = [
        models.FieldCondition(key=TENANT, match=models.MatchValue(value=tenant))
    ]
    if document_ids is not None:
        must.append(
            models.FieldCondition(key=DOCUMENT_ID, match=models.MatchAny(any=list(document_ids)))
        )
    return models.Filter(must=must)


def _server_point(point: ChunkPoint) -> models.PointStruct:
    vectors: dict[str, models.Vector] = {DENSE: list(point.vector)}
    return models.PointStruct(id=point.id, vector=vectors, payload=point.payload)


class ServerStore:
    """A collection on a Qdrant server (or in qdrant-client's local mode, for tests)."""

    def __init__(self, client: QdrantClient, collection: str) -> None:
        """Use `collection` through an already built client."""
        self._client = client
        self._collection = collection
        options = client.init_options
        self._local = options.get("location") == ":memory:" or options.get("path") is not None
        # qdrant-client's local mode is not thread-safe; a real server is.
        self._lock: AbstractContextManager[Any] = (
            threading.Lock() if self._local else contextlib.nullcontext()
        )

    def ensure(self, dim: int) -> None:
        """Create the collection and its payload indexes if missing; check its vector size."""
        with self._lock:
            if not self._client.collection_exists(self._collection):
                self._create(dim)
            params = self._client.get_collection(self._collection).config.params.vectors
            if not isinstance(params, dict) or DENSE not in params:
                raise ValueError(f"collection {self._collection} has no vector named {DENSE!r}")
            _check_dim(params[DENSE].size, dim)
            # Local mode ignores payload indexes and warns about them.
            if not self._local:
                self._client.create_payload_index(
                    self._collection,
                    TENANT,
                    models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
                )
                self._client.create_payload_index(
                    self._collection, DOCUMENT_ID, models.PayloadSchemaType.KEYWORD
                )

    def upsert(self, points: Sequence[ChunkPoint]) -> None:
        """Insert or replace points, waiting until they are applied."""
        if not points:
            return
        structs = [_server_point(p) for p in points]
        with self._lock:
            self._client.upsert(self._collection, points=structs, wait=True)

    def delete_document(self, tenant: str, document_id: str) -> None:
        """Remove every chunk of one document of one tenant, waiting until it is applied."""
        selector = models.FilterSelector(filter=_server_filter(tenant, [document_id]))
        with self._lock:
            self._client.delete(self._collection, points_selector=selector, wait=True)

    def search(
        self,
        tenant: str,
        vector: Sequence[float],
        limit: int,
        document_ids: Sequence[str] | None = None,
    ) -> list[SearchHit]:
        """Nearest chunks of the tenant, best first, optionally only from the given documents."""
        if document_ids is not None and not document_ids:
            return []
        with self._lock:
            response = self._client.query_points(
                self._collection,
                query=list(vector),
                using=DENSE,
                query_filter=_server_filter(tenant, document_ids),
                limit=limit,
                with_payload=True,
            )
        return [SearchHit(str(p.id), p.score, dict(p.payload or {})) for p in response.points]

    def count(self, tenant: str, document_id: str | None = None) -> int:
        """Exact number of chunks of the tenant, or of one of its documents."""
        flt = _server_filter(tenant, None if document_id is None else [document_id])
        with self._lock:
            return self._client.count(self._collection, count_filter=flt, exact=True).count

    def close(self) -> None:
        """Close the client."""
        with self._lock:
            self._client.close()

    def _create(self, dim: int) -> None:
        vectors = {DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)}
        try:
            self._client.create_collection(self._collection, vectors_config=vectors)
        except UnexpectedResponse:
            # Another process may have created it in the meantime.
            if not self._client.collection_exists(self._collection):
                raise


def open_store(settings: Settings) -> VectorStore:
    """The embedded store when no Qdrant URL is set, else the server's collection."""
    if not settings.qdrant_url:
        return EdgeStore(settings.vector_path)
    client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key or None)
    return ServerStore(client, settings.collection)
