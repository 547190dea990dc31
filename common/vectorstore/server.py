"""The server adapter: a collection on a Qdrant server (or qdrant-client's local mode)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

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


def _server_condition(key: str, value: MetadataValue | list[str]) -> models.FieldCondition:
    if isinstance(value, list):
        return models.FieldCondition(key=key, match=models.MatchAny(any=value))
    if isinstance(value, int | float) and not isinstance(value, bool):
        # A range matches 3 and 3.0 alike; an integer match would miss 3.0.
        return models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _server_visible(groups: list[str]) -> models.Filter:
    """Ungrouped chunks (no field, or an empty list), or chunks of one of the groups."""
    should: list[models.Condition] = [
        models.IsEmptyCondition(is_empty=models.PayloadField(key=ACCESS_GROUPS))
    ]
    if groups:
        should.append(models.FieldCondition(key=ACCESS_GROUPS, match=models.MatchAny(any=groups)))
    return models.Filter(should=should)


def _server_filter(
    conditions: Sequence[plan.Condition],
    exclude: Sequence[plan.Condition] = (),
    groups: list[str] | None = None,
) -> models.Filter:
    must: list[models.Condition] = [_server_condition(key, value) for key, value in conditions]
    if groups is not None:
        must.append(_server_visible(groups))
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
        return models.RrfQuery(rrf=models.Rrf(k=plan.RRF_K))
    return models.FusionQuery(fusion=models.Fusion.DBSF)


def _server_query(search: plan.Search, fusion: SearchFusion) -> dict[str, Any]:
    """Keyword arguments of `QdrantClient.query_points` for the search."""
    flt = _server_filter(search.conditions, search.excluded, search.groups)
    # IDF statistics over the chunks the key reads only, as if it had a collection of its own.
    corpus = _server_filter(search.conditions[:1], groups=search.groups)
    params = models.SearchParams(idf=models.IdfCorpusParams(corpus=corpus))
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
            check_dim(vectors[DENSE].size, dim)
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
                for field in KEYWORD_FIELDS:
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
        self._delete(_server_filter(plan.document(tenant, document_id)))

    def commit_version(self, tenant: str, document_id: str, version: str) -> None:
        """Make a version's staged chunks searchable, then remove the document's other chunks."""
        document = plan.document(tenant, document_id)
        ours = models.FilterSelector(filter=_server_filter([*document, (VERSION, version)]))
        with self._lock:
            self._client.delete_payload(self._collection, [STATE], points=ours, wait=True)
        self._delete(_server_filter(document, [(VERSION, version)]))

    def set_groups(
        self, tenant: str, document_id: str, groups: Sequence[str], version: str | None = None
    ) -> None:
        """Give every chunk of one document (or of one version of it) these access groups."""
        selector = models.FilterSelector(
            filter=_server_filter(plan.grouped(tenant, document_id, version))
        )
        with self._lock:
            self._client.set_payload(
                self._collection, {ACCESS_GROUPS: list(groups)}, points=selector, wait=True
            )

    def discard_version(self, tenant: str, document_id: str, version: str) -> None:
        """Remove a version's staged chunks (a committed version stays)."""
        self._delete(_server_filter(plan.staged(tenant, document_id, version)))

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
        with self._lock:
            response = self._client.query_points(
                self._collection,
                limit=limit,
                with_payload=True,
                **_server_query(search, fusion),
            )
        return hits(response.points)

    def count(self, tenant: str, document_id: str | None = None) -> int:
        """Exact number of chunks of the tenant, or of one of its documents."""
        flt = _server_filter(plan.counted(tenant, document_id))
        with self._lock:
            return self._client.count(self._collection, count_filter=flt, exact=True).count

    def chunks(self, tenant: str, document_id: str) -> list[SearchHit]:
        """Every searchable chunk of one document of one tenant (score 0), in no order."""
        flt = _server_filter(plan.document(tenant, document_id), plan.NOT_SEARCHABLE)

        def page(
            offset: models.ExtendedPointId | None,
        ) -> tuple[list[models.Record], models.ExtendedPointId | None]:
            with self._lock:
                return self._client.scroll(
                    self._collection, scroll_filter=flt, limit=SCROLL_PAGE, offset=offset
                )

        return scroll_all(page)

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
