"""The vector store port: the protocol the workers use, its data types and payload fields."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# ACCESS_GROUPS: the document's access groups (a list; missing or empty: ungrouped, as chunks
# stored before groups are). Searches admit a key's groups and ungrouped chunks inside the query.
from common.access import ACCESS_GROUPS
from common.schemas import SearchFilter, SearchFusion, SearchMode
from common.sparse import SparseVector

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
# Keyword-indexed payload fields besides the tenant (which has Qdrant's tenant index).
KEYWORD_FIELDS = (DOCUMENT_ID, TITLE, VERSION, STATE, ACCESS_GROUPS)
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
        groups: Sequence[str] | None = None,
        hidden: Sequence[str] = (),
    ) -> list[SearchHit]:
        """The tenant's best chunks by `mode` (hybrid merged by `fusion`) meeting every filter;
        with `groups`, only ungrouped chunks and those of one of the groups; none of `hidden`
        documents."""
        ...

    def set_groups(
        self, tenant: str, document_id: str, groups: Sequence[str], version: str | None = None
    ) -> None:
        """Give every chunk of one document (or of one version of it) these access groups."""
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


def check_dim(expected: int, dim: int) -> None:
    """Raise unless the store's vector size is the one asked for."""
    if expected != dim:
        raise ValueError(f"vector store holds vectors of size {expected}, not {dim}")


def hits(points: Iterable[Any]) -> list[SearchHit]:
    """Search hits from the scored points of either adapter's client."""
    return [SearchHit(str(p.id), p.score, dict(p.payload or {})) for p in points]


def scroll_all(page: Callable[[Any], tuple[Iterable[Any], Any]]) -> list[SearchHit]:
    """Every record of a paged scroll (score 0): `page` reads the records at an offset (None
    first) and the offset of the next page (None after the last)."""
    found: list[SearchHit] = []
    offset: Any = None
    while True:
        records, offset = page(offset)
        found.extend(SearchHit(str(r.id), 0.0, dict(r.payload or {})) for r in records)
        if offset is None:
            return found
