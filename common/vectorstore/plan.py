"""Searches and selections as payload conditions, checked once for both adapters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from common.schemas import MetadataValue, SearchFilter, SearchMode
from common.sparse import SparseVector
from common.vectorstore.port import DOCUMENT_ID, METADATA, STAGED, STATE, TENANT, TITLE, VERSION

# Each side of a hybrid search hands this many candidates, at least, to the fusion: reciprocal
# rank fusion (sum of 1 / (k + rank)) or distribution-based score fusion (each side's scores
# scaled by their mean and spread, then added); bench/retrieval.py compares them.
PREFETCH_MIN = 100
PREFETCH_FACTOR = 4
RRF_K = 60

# A payload condition: equal to a value, or (a list) equal to one of the values.
Condition = tuple[str, MetadataValue | list[str]]
# What every search and re-index excludes.
NOT_SEARCHABLE: list[Condition] = [(STATE, STAGED)]


def document(tenant: str, document_id: str) -> list[Condition]:
    """The conditions that select one document's chunks."""
    return [(TENANT, tenant), (DOCUMENT_ID, [document_id])]


def staged(tenant: str, document_id: str, version: str) -> list[Condition]:
    """The conditions that select a version's staged chunks."""
    return [*document(tenant, document_id), (VERSION, version), (STATE, STAGED)]


def grouped(tenant: str, document_id: str, version: str | None) -> list[Condition]:
    """The conditions that select the chunks whose groups `set_groups` changes."""
    selected = document(tenant, document_id)
    return selected if version is None else [*selected, (VERSION, version)]


def counted(tenant: str, document_id: str | None) -> list[Condition]:
    """The conditions that select the chunks `count` counts: the tenant's, or one document's."""
    return [(TENANT, tenant)] if document_id is None else document(tenant, document_id)


@dataclass(frozen=True)
class Search:
    """A search request checked and reduced to what both adapters need."""

    mode: SearchMode
    dense: list[float] | None
    sparse: SparseVector | None
    limit: int
    conditions: list[Condition]
    # Chunks of one of these groups, or ungrouped, only (None: every chunk of the tenant).
    groups: list[str] | None = None
    # What no hit may match: staged chunks, and the documents the key may no longer read.
    excluded: list[Condition] = field(default_factory=lambda: list(NOT_SEARCHABLE))

    @property
    def prefetch_limit(self) -> int:
        """How many candidates each side of a hybrid search hands to the fusion."""
        return max(self.limit * PREFETCH_FACTOR, PREFETCH_MIN)


def search(
    tenant: str,
    vector: Sequence[float] | None,
    limit: int,
    document_ids: Sequence[str] | None,
    sparse: SparseVector | None,
    mode: SearchMode,
    flt: SearchFilter | None,
    groups: Sequence[str] | None = None,
    hidden: Sequence[str] = (),
) -> Search | None:
    """The search to run, or None when nothing can match; `hidden` documents never match."""
    mode = SearchMode(mode)
    if vector is None and mode is not SearchMode.SPARSE:
        raise ValueError(f"a {mode} search needs a dense vector")
    if sparse is None and mode is not SearchMode.DENSE:
        raise ValueError(f"a {mode} search needs a sparse vector")
    flt = flt or SearchFilter()
    conditions: list[Condition] = [(TENANT, tenant)]
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
    return Search(
        mode=mode,
        dense=None if vector is None else list(vector),
        sparse=sparse,
        limit=limit,
        conditions=conditions,
        groups=None if groups is None else list(groups),
        excluded=[*NOT_SEARCHABLE, *([(DOCUMENT_ID, list(hidden))] if hidden else [])],
    )
