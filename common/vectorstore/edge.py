"""The embedded adapter: a Qdrant Edge shard in a folder, in the worker's own process."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import qdrant_edge as edge

from common.schemas import MetadataValue, SearchFilter, SearchFusion, SearchMode
from common.sparse import SparseVector
from common.vectorstore import plan
from common.vectorstore.port import (
    ACCESS_GROUPS,
    DENSE,
    KEYWORD_FIELDS,
    SCROLL_PAGE,
    SPARSE,
    STATE,
    TENANT,
    VERSION,
    ChunkPoint,
    SearchHit,
    check_dim,
    hits,
    scroll_all,
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


def _edge_visible(groups: list[str]) -> edge.Filter:
    """Ungrouped chunks (no field, or an empty list), or chunks of one of the groups."""
    should: list[edge.FieldCondition | edge.IsEmptyCondition] = [
        edge.IsEmptyCondition(ACCESS_GROUPS)
    ]
    if groups:
        should.append(edge.FieldCondition(ACCESS_GROUPS, match=edge.MatchAny(groups)))
    return edge.Filter(should=list(should))


def _edge_filter(
    conditions: Sequence[plan.Condition],
    exclude: Sequence[plan.Condition] = (),
    groups: list[str] | None = None,
) -> edge.Filter:
    must: list[edge.FieldCondition | edge.Filter] = [
        _edge_condition(key, value) for key, value in conditions
    ]
    if groups is not None:
        must.append(_edge_visible(groups))
    return edge.Filter(
        must=list(must),
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
        return cast(edge.Fusion, edge.Fusion.Rrf(k=plan.RRF_K))
    return cast(edge.Fusion, edge.Fusion.Dbsf())


def _edge_query(search: plan.Search, fusion: SearchFusion) -> edge.QueryRequest:
    flt = _edge_filter(search.conditions, search.excluded, search.groups)
    # IDF statistics over the chunks the key reads only, as if it had a collection of its own.
    corpus = _edge_filter(search.conditions[:1], groups=search.groups)
    params = edge.SearchParams(idf=edge.IdfParams(corpus=corpus))
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
                check_dim(self._dim, dim)
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
            for field in KEYWORD_FIELDS:
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
        flt = _edge_filter(plan.document(tenant, document_id))
        self._write(edge.UpdateOperation.delete_points_by_filter(flt))

    def commit_version(self, tenant: str, document_id: str, version: str) -> None:
        """Make a version's staged chunks searchable, then remove the document's other chunks."""
        document = plan.document(tenant, document_id)
        ours = _edge_filter([*document, (VERSION, version)])
        self._write(edge.UpdateOperation.delete_payload_by_filter(ours, [STATE]))
        others = _edge_filter(document, [(VERSION, version)])
        self._write(edge.UpdateOperation.delete_points_by_filter(others))

    def set_groups(
        self, tenant: str, document_id: str, groups: Sequence[str], version: str | None = None
    ) -> None:
        """Give every chunk of one document (or of one version of it) these access groups."""
        flt = _edge_filter(plan.grouped(tenant, document_id, version))
        self._write(edge.UpdateOperation.set_payload_by_filter(flt, {ACCESS_GROUPS: list(groups)}))

    def discard_version(self, tenant: str, document_id: str, version: str) -> None:
        """Remove a version's staged chunks (a committed version stays)."""
        flt = _edge_filter(plan.staged(tenant, document_id, version))
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
        groups: Sequence[str] | None = None,
        hidden: Sequence[str] = (),
    ) -> list[SearchHit]:
        """The tenant's best chunks by `mode` (hybrid merged by `fusion`) meeting every filter;
        with `groups`, only ungrouped chunks and those of one of the groups; none of `hidden`
        documents."""
        search = plan.search(
            tenant, vector, limit, document_ids, sparse, mode, filter, groups, hidden
        )
        if search is None:
            return []
        return hits(self._opened().query(_edge_query(search, fusion)))

    def count(self, tenant: str, document_id: str | None = None) -> int:
        """Exact number of chunks of the tenant, or of one of its documents."""
        flt = _edge_filter(plan.counted(tenant, document_id))
        return self._opened().count(edge.CountRequest(exact=True, filter=flt))

    def chunks(self, tenant: str, document_id: str) -> list[SearchHit]:
        """Every searchable chunk of one document of one tenant (score 0), in no order."""
        flt = _edge_filter(plan.document(tenant, document_id), plan.NOT_SEARCHABLE)

        def page(offset: edge.PointId | None) -> tuple[list[edge.Record], edge.PointId | None]:
            request = edge.ScrollRequest(
                offset=offset, limit=SCROLL_PAGE, filter=flt, with_payload=True, with_vector=False
            )
            return self._opened().scroll(request)

        return scroll_all(page)

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
