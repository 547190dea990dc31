"""Vector store port with two Qdrant adapters: an embedded Qdrant Edge shard and a Qdrant server.

Points are document chunks with a dense vector named "dense" (cosine) and a BM25 sparse vector
named "sparse" whose IDF Qdrant computes at query time. Searches are dense, sparse, or hybrid: both
fused in Qdrant's query API. Every read and delete is scoped to one tenant through the "tenant"
payload field, and so are the IDF statistics of sparse searches.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import qdrant_edge as edge
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from common.schemas import MetadataValue, SearchFilter, SearchFusion, SearchMode
from common.sparse import SparseVector

if TYPE_CHECKING:
    from common.settings import Settings

DENSE = "dense"
SPARSE = "sparse"
TENANT = "tenant"
DOCUMENT_ID = "document_id"
TITLE = "title"
METADATA = "metadata"
# The ingest job that wrote a chunk, and "staged" while that job is not complete: searches and
# re-indexing skip staged chunks, so a document's previous version serves until the new one is
# whole (`commit_version`), and an abandoned version is removed whole (`discard_version`).
VERSION = "version"
STATE = "state"
STAGED = "staged"

# Each side of a hybrid search hands this many candidates, at least, to the fusion: reciprocal
# rank fusion (sum of 1 / (k + rank)) or distribution-based score fusion (each side's scores
# scaled by their mean and spread, then added); bench/retrieval.py compares them.
PREFETCH_MIN = 100
PREFETCH_FACTOR = 4
RRF_K = 60
SCROLL_PAGE = 256


@dataclass(frozen=True)
class ChunkPoint:
    """One chunk to store: a UUID string id, its dense and sparse vectors and its payload."""

    id: str
    vector: list[float]
    payload: dict[str, Any]
    sparse: SparseVector | None = None


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

    def commit_version(self, tenant: str, document_id: str, version: str) -> None:
        """Make a version's staged chunks searchable, then remove the document's other chunks."""
        ...

    def discard_version(self, tenant: str, document_id: str, version: str) -> None:
        """Remove a version's staged chunks (a committed version stays)."""
        ...

    def search(
        self,
        tenant: str,
        vector: Sequence[float] | None,
        limit: int,
        document_ids: Sequence[str] | None = None,
        *,
        sparse: SparseVector | None = None,
        mode: SearchMode = SearchMode.DENSE,
        filter: SearchFilter | None = None,
        fusion: SearchFusion = SearchFusion.DBSF,
    ) -> list[SearchHit]:
        """The tenant's best chunks by `mode` (hybrid merged by `fusion`) meeting every filter."""
        ...

    def count(self, tenant: str, document_id: str | None = None) -> int:
        """Exact number of chunks of the tenant, or of one of its documents."""
        ...

    def chunks(self, tenant: str, document_id: str) -> list[SearchHit]:
        """Every searchable chunk of one document of one tenant (score 0), in no order."""
        ...

    def close(self) -> None:
        """Release the store; it cannot be used afterwards."""
        ...


def _check_dim(expected: int, dim: int) -> None:
    if expected != dim:
        raise ValueError(f"vector store holds vectors of size {expected}, not {dim}")


# A payload condition: equal to a value, or (a list) equal to one of the values.
_Condition = tuple[str, MetadataValue | list[str]]
# What every search and re-index excludes.
_NOT_SEARCHABLE: list[_Condition] = [(STATE, STAGED)]


def _document(tenant: str, document_id: str) -> list[_Condition]:
    """The conditions that select one document's chunks."""
    return [(TENANT, tenant), (DOCUMENT_ID, [document_id])]


def _staged(tenant: str, document_id: str, version: str) -> list[_Condition]:
    """The conditions that select a version's staged chunks."""
    return [*_document(tenant, document_id), (VERSION, version), (STATE, STAGED)]


@dataclass(frozen=True)
class _Search:
    """A search request checked and reduced to what both adapters need."""

    mode: SearchMode
    dense: list[float] | None
    sparse: SparseVector | None
    limit: int
    conditions: list[_Condition]

    @property
    def prefetch_limit(self) -> int:
        return max(self.limit * PREFETCH_FACTOR, PREFETCH_MIN)


def _plan(
    tenant: str,
    vector: Sequence[float] | None,
    limit: int,
    document_ids: Sequence[str] | None,
    sparse: SparseVector | None,
    mode: SearchMode,
    flt: SearchFilter | None,
) -> _Search | None:
    """The search to run, or None when nothing can match."""
    mode = SearchMode(mode)
    if vector is None and mode is not SearchMode.SPARSE:
        raise ValueError(f"a {mode} search needs a dense vector")
    if sparse is None and mode is not SearchMode.DENSE:
        raise ValueError(f"a {mode} search needs a sparse vector")
    flt = flt or SearchFilter()
    conditions: list[_Condition] = [(TENANT, tenant)]
    for key, values in (
        (DOCUMENT_ID, document_ids),
        (DOCUMENT_ID, flt.document_ids),
        (TITLE, flt.titles),
    ):
        if values is not None:
            if not values:
                return None
            conditions.append((key, list(values)))
    for key, value in (flt.metadata or {}).items():
        if '"' in key:
            raise ValueError(f"metadata key {key!r} contains a double quote")
        conditions.append((f'{METADATA}."{key}"', value))
    if mode is not SearchMode.DENSE and not cast(SparseVector, sparse).indices:
        # A query of stop words only: the sparse side finds nothing.
        if mode is SearchMode.SPARSE:
            return None
        mode = SearchMode.DENSE
    return _Search(
        mode=mode,
        dense=None if vector is None else list(vector),
        sparse=sparse,
        limit=limit,
        conditions=conditions,
    )


# Sizes in KB of vectors (~13k and ~40k vectors of size 384): the unindexed tail stays small
# enough to scan, and each optimize step stays short, which matters since it holds the GIL.
_EDGE_OPTIMIZERS = edge.EdgeOptimizersConfig(indexing_threshold=20_000, max_segment_size=60_000)


def _edge_condition(key: str, value: MetadataValue | list[str]) -> edge.FieldCondition:
    if isinstance(value, list):
        return edge.FieldCondition(key, match=edge.MatchAny(value))
    if isinstance(value, bool):
        # qdrant-edge 0.9 reads a Python bool as the integer 1 or 0, which matches no boolean
        # payload value; numpy's bool_ is not an int and is read as a boolean.
        return edge.FieldCondition(key, match=edge.MatchValue(cast(bool, np.bool_(value))))
    if isinstance(value, int | float):
        # A range matches 3 and 3.0 alike; an integer match would miss 3.0.
        return edge.FieldCondition(key, range=edge.RangeFloat(gte=value, lte=value))
    return edge.FieldCondition(key, match=edge.MatchValue(value))


def _edge_filter(
    conditions: Sequence[_Condition], exclude: Sequence[_Condition] = ()
) -> edge.Filter:
    return edge.Filter(
        must=[_edge_condition(key, value) for key, value in conditions],
        must_not=[_edge_condition(key, value) for key, value in exclude] or None,
    )


def _edge_sparse(vector: SparseVector) -> edge.SparseVector:
    return edge.SparseVector(list(vector.indices), list(vector.values))


def _edge_point(point: ChunkPoint) -> edge.Point:
    vectors: dict[str, edge.NamedVector] = {DENSE: list(point.vector)}
    if point.sparse is not None:
        vectors[SPARSE] = _edge_sparse(point.sparse)
    return edge.Point(point.id, vectors, point.payload)


def _edge_fusion(fusion: SearchFusion) -> edge.Fusion:
    # Fusion.Rrf and Fusion.Dbsf subclass Fusion, which the package's stubs do not say.
    if fusion is SearchFusion.RRF:
        return cast(edge.Fusion, edge.Fusion.Rrf(k=RRF_K))
    return cast(edge.Fusion, edge.Fusion.Dbsf())


def _edge_query(search: _Search, fusion: SearchFusion) -> edge.QueryRequest:
    flt = _edge_filter(search.conditions, _NOT_SEARCHABLE)
    # IDF statistics over the tenant's chunks only, as if it had a collection of its own.
    params = edge.SearchParams(idf=edge.IdfParams(corpus=_edge_filter(search.conditions[:1])))
    dense = None if search.dense is None else edge.Query.Nearest(search.dense, using=DENSE)
    sparse = (
        None
        if search.sparse is None
        else edge.Query.Nearest(_edge_sparse(search.sparse), using=SPARSE)
    )
    if search.mode is SearchMode.HYBRID:
        return edge.QueryRequest(
            limit=search.limit,
            prefetches=[
                edge.Prefetch(limit=search.prefetch_limit, query=dense, filter=flt),
                edge.Prefetch(limit=search.prefetch_limit, query=sparse, filter=flt, params=params),
            ],
            query=_edge_fusion(fusion),
            with_payload=True,
        )
    if search.mode is SearchMode.SPARSE:
        return edge.QueryRequest(
            limit=search.limit, query=sparse, filter=flt, params=params, with_payload=True
        )
    return edge.QueryRequest(limit=search.limit, query=dense, filter=flt, with_payload=True)


class EdgeStore:
    """Embedded Qdrant Edge shard in a folder: one process only, safe across its threads."""

    def __init__(self, path: Path | str) -> None:
        """Remember the shard folder; `ensure` opens or creates the shard."""
        self._path = Path(path)
        self._dim: int | None = None
        self._shard: edge.EdgeShard | None = None
        # Calls into the shard are thread-safe; the lock keeps each write and its optimize step
        # together, and keeps `close` from racing a write.
        self._lock = threading.Lock()

    def ensure(self, dim: int) -> None:
        """Load the shard from its folder, or create it there, for vectors of size `dim`."""
        with self._lock:
            if self._dim is not None:
                _check_dim(self._dim, dim)
                return
            dense = {DENSE: edge.EdgeVectorParams(size=dim, distance=edge.Distance.Cosine)}
            if (self._path / "edge_config.json").exists():
                # Raises if the stored dense vectors do not match; the sparse ones are kept as
                # they are, since a shard made before hybrid search has none.
                config = edge.EdgeConfig(vectors=dense, optimizers=_EDGE_OPTIMIZERS)
                shard = edge.EdgeShard.load(str(self._path), config)
            else:
                config = edge.EdgeConfig(
                    vectors=dense,
                    sparse_vectors={
                        SPARSE: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)
                    },
                    optimizers=_EDGE_OPTIMIZERS,
                )
                self._path.mkdir(parents=True, exist_ok=True)
                shard = edge.EdgeShard.create(str(self._path), config)
            # Adds the sparse vector to an older shard; does nothing if it is there already, and
            # raises if it is there with other parameters.
            shard.update(edge.UpdateOperation.create_sparse_vector(SPARSE, edge.Modifier.Idf))
            shard.update(
                edge.UpdateOperation.create_field_index(
                    TENANT, edge.KeywordIndexParams(is_tenant=True)
                )
            )
            for field in (DOCUMENT_ID, TITLE, VERSION, STATE):
                shard.update(
                    edge.UpdateOperation.create_field_index(field, edge.PayloadSchemaType.Keyword)
                )
            shard.flush()
            self._shard, self._dim = shard, dim

    def upsert(self, points: Sequence[ChunkPoint]) -> None:
        """Insert or replace points; they are durable once this returns."""
        if points:
            self._write(edge.UpdateOperation.upsert_points([_edge_point(p) for p in points]))

    def delete_document(self, tenant: str, document_id: str) -> None:
        """Remove every chunk of one document of one tenant."""
        flt = _edge_filter(_document(tenant, document_id))
        self._write(edge.UpdateOperation.delete_points_by_filter(flt))

    def commit_version(self, tenant: str, document_id: str, version: str) -> None:
        """Make a version's staged chunks searchable, then remove the document's other chunks."""
        document = _document(tenant, document_id)
        ours = _edge_filter([*document, (VERSION, version)])
        self._write(edge.UpdateOperation.delete_payload_by_filter(ours, [STATE]))
        others = _edge_filter(document, [(VERSION, version)])
        self._write(edge.UpdateOperation.delete_points_by_filter(others))

    def discard_version(self, tenant: str, document_id: str, version: str) -> None:
        """Remove a version's staged chunks (a committed version stays)."""
        flt = _edge_filter(_staged(tenant, document_id, version))
        self._write(edge.UpdateOperation.delete_points_by_filter(flt))

    def search(
        self,
        tenant: str,
        vector: Sequence[float] | None,
        limit: int,
        document_ids: Sequence[str] | None = None,
        *,
        sparse: SparseVector | None = None,
        mode: SearchMode = SearchMode.DENSE,
        filter: SearchFilter | None = None,
        fusion: SearchFusion = SearchFusion.DBSF,
    ) -> list[SearchHit]:
        """The tenant's best chunks by `mode` (hybrid merged by `fusion`) meeting every filter."""
        search = _plan(tenant, vector, limit, document_ids, sparse, mode, filter)
        if search is None:
            return []
        points = self._opened().query(_edge_query(search, fusion))
        return [SearchHit(str(p.id), p.score, dict(p.payload or {})) for p in points]

    def count(self, tenant: str, document_id: str | None = None) -> int:
        """Exact number of chunks of the tenant, or of one of its documents."""
        conditions: list[_Condition] = [(TENANT, tenant)]
        if document_id is not None:
            conditions.append((DOCUMENT_ID, [document_id]))
        return self._opened().count(edge.CountRequest(exact=True, filter=_edge_filter(conditions)))

    def chunks(self, tenant: str, document_id: str) -> list[SearchHit]:
        """Every searchable chunk of one document of one tenant (score 0), in no order."""
        flt = _edge_filter(_document(tenant, document_id), _NOT_SEARCHABLE)
        found: list[SearchHit] = []
        offset: edge.PointId | None = None
        while True:
            request = edge.ScrollRequest(
                offset=offset, limit=SCROLL_PAGE, filter=flt, with_payload=True, with_vector=False
            )
            records, offset = self._opened().scroll(request)
            found.extend(SearchHit(str(r.id), 0.0, dict(r.payload or {})) for r in records)
            if offset is None:
                return found

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
            # The write-ahead log keeps the operation once update() returns, even if the process
            # dies before a flush (test_edge_store_keeps_writes_of_a_killed_process); a flush per
            # write would cost about 5 ms.
            shard.update(operation)
            # Edge has no background optimizer: without this step nothing is ever indexed.
            # It returns at once unless a segment crossed a threshold.
            shard.optimize()


def _server_condition(key: str, value: MetadataValue | list[str]) -> models.FieldCondition:
    if isinstance(value, list):
        return models.FieldCondition(key=key, match=models.MatchAny(any=value))
    if isinstance(value, int | float) and not isinstance(value, bool):
        # A range matches 3 and 3.0 alike; an integer match would miss 3.0.
        return models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _server_filter(
    conditions: Sequence[_Condition], exclude: Sequence[_Condition] = ()
) -> models.Filter:
    must: list[models.Condition] = [_server_condition(key, value) for key, value in conditions]
    must_not: list[models.Condition] = [_server_condition(key, value) for key, value in exclude]
    return models.Filter(must=must, must_not=must_not or None)


def _server_sparse(vector: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


def _server_point(point: ChunkPoint) -> models.PointStruct:
    vectors: dict[str, models.Vector] = {DENSE: list(point.vector)}
    if point.sparse is not None:
        vectors[SPARSE] = _server_sparse(point.sparse)
    return models.PointStruct(id=point.id, vector=vectors, payload=point.payload)


def _server_fusion(fusion: SearchFusion) -> models.Query:
    if fusion is SearchFusion.RRF:
        return models.RrfQuery(rrf=models.Rrf(k=RRF_K))
    return models.FusionQuery(fusion=models.Fusion.DBSF)


def _server_query(search: _Search, fusion: SearchFusion) -> dict[str, Any]:
    """Keyword arguments of `QdrantClient.query_points` for the search."""
    flt = _server_filter(search.conditions, _NOT_SEARCHABLE)
    # IDF statistics over the tenant's chunks only, as if it had a collection of its own.
    params = models.SearchParams(
        idf=models.IdfCorpusParams(corpus=_server_filter(search.conditions[:1]))
    )
    dense = search.dense
    sparse = None if search.sparse is None else _server_sparse(search.sparse)
    if search.mode is SearchMode.HYBRID:
        return {
            "prefetch": [
                models.Prefetch(query=dense, using=DENSE, filter=flt, limit=search.prefetch_limit),
                models.Prefetch(
                    query=sparse,
                    using=SPARSE,
                    filter=flt,
                    params=params,
                    limit=search.prefetch_limit,
                ),
            ],
            "query": _server_fusion(fusion),
        }
    if search.mode is SearchMode.SPARSE:
        return {"query": sparse, "using": SPARSE, "query_filter": flt, "search_params": params}
    return {"query": dense, "using": DENSE, "query_filter": flt}


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
            params = self._client.get_collection(self._collection).config.params
            vectors, sparse = params.vectors, params.sparse_vectors or {}
            if not isinstance(vectors, dict) or DENSE not in vectors:
                raise ValueError(f"collection {self._collection} has no vector named {DENSE!r}")
            _check_dim(vectors[DENSE].size, dim)
            if SPARSE not in sparse or sparse[SPARSE].modifier != models.Modifier.IDF:
                raise ValueError(
                    f"collection {self._collection} has no sparse vector named {SPARSE!r} "
                    "with the IDF modifier"
                )
            # Local mode ignores payload indexes and warns about them.
            if not self._local:
                self._client.create_payload_index(
                    self._collection,
                    TENANT,
                    models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
                )
                for field in (DOCUMENT_ID, TITLE, VERSION, STATE):
                    self._client.create_payload_index(
                        self._collection, field, models.PayloadSchemaType.KEYWORD
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
        self._delete(_server_filter(_document(tenant, document_id)))

    def commit_version(self, tenant: str, document_id: str, version: str) -> None:
        """Make a version's staged chunks searchable, then remove the document's other chunks."""
        document = _document(tenant, document_id)
        ours = models.FilterSelector(filter=_server_filter([*document, (VERSION, version)]))
        with self._lock:
            self._client.delete_payload(self._collection, [STATE], points=ours, wait=True)
        self._delete(_server_filter(document, [(VERSION, version)]))

    def discard_version(self, tenant: str, document_id: str, version: str) -> None:
        """Remove a version's staged chunks (a committed version stays)."""
        self._delete(_server_filter(_staged(tenant, document_id, version)))

    def _delete(self, flt: models.Filter) -> None:
        with self._lock:
            self._client.delete(
                self._collection, points_selector=models.FilterSelector(filter=flt), wait=True
            )

    def search(
        self,
        tenant: str,
        vector: Sequence[float] | None,
        limit: int,
        document_ids: Sequence[str] | None = None,
        *,
        sparse: SparseVector | None = None,
        mode: SearchMode = SearchMode.DENSE,
        filter: SearchFilter | None = None,
        fusion: SearchFusion = SearchFusion.DBSF,
    ) -> list[SearchHit]:
        """The tenant's best chunks by `mode` (hybrid merged by `fusion`) meeting every filter."""
        search = _plan(tenant, vector, limit, document_ids, sparse, mode, filter)
        if search is None:
            return []
        with self._lock:
            response = self._client.query_points(
                self._collection,
                limit=limit,
                with_payload=True,
                **_server_query(search, fusion),
            )
        return [SearchHit(str(p.id), p.score, dict(p.payload or {})) for p in response.points]

    def count(self, tenant: str, document_id: str | None = None) -> int:
        """Exact number of chunks of the tenant, or of one of its documents."""
        conditions: list[_Condition] = [(TENANT, tenant)]
        if document_id is not None:
            conditions.append((DOCUMENT_ID, [document_id]))
        flt = _server_filter(conditions)
        with self._lock:
            return self._client.count(self._collection, count_filter=flt, exact=True).count

    def chunks(self, tenant: str, document_id: str) -> list[SearchHit]:
        """Every searchable chunk of one document of one tenant (score 0), in no order."""
        flt = _server_filter(_document(tenant, document_id), _NOT_SEARCHABLE)
        found: list[SearchHit] = []
        offset: models.ExtendedPointId | None = None
        while True:
            with self._lock:
                records, offset = self._client.scroll(
                    self._collection, scroll_filter=flt, limit=SCROLL_PAGE, offset=offset
                )
            found.extend(SearchHit(str(r.id), 0.0, dict(r.payload or {})) for r in records)
            if offset is None:
                return found

    def close(self) -> None:
        """Close the client."""
        with self._lock:
            self._client.close()

    def _create(self, dim: int) -> None:
        vectors = {DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)}
        sparse = {SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)}
        try:
            self._client.create_collection(
                self._collection, vectors_config=vectors, sparse_vectors_config=sparse
            )
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
