"""Vector store port with two Qdrant adapters: an embedded Qdrant Edge shard and a Qdrant server.

Points are document chunks with a dense vector named "dense" (cosine) and a BM25 sparse vector
named "sparse" whose IDF Qdrant computes at query time. Searches are dense, sparse, or hybrid: both
fused in Qdrant's query API. Every read and delete is scoped to one tenant through the "tenant"
payload field, and so are the IDF statistics of sparse searches; a search for a key that is no
tenant admin also admits only ungrouped chunks and those of the key's access groups.

`port` holds the protocol and its types, `plan` turns a request into payload conditions once for
both adapters, `edge` and `server` are the adapters; this module re-exports what callers use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qdrant_client import QdrantClient

from common.vectorstore.edge import EdgeStore
from common.vectorstore.port import (
    DENSE,
    DOCUMENT_ID,
    METADATA,
    SPARSE,
    STAGED,
    STATE,
    TENANT,
    TITLE,
    VERSION,
    ChunkPoint,
    SearchHit,
    VectorStore,
)
from common.vectorstore.server import ServerStore

if TYPE_CHECKING:
    from common.settings import Settings

__all__ = [
    "DENSE",
    "DOCUMENT_ID",
    "METADATA",
    "SPARSE",
    "STAGED",
    "STATE",
    "TENANT",
    "TITLE",
    "VERSION",
    "ChunkPoint",
    "EdgeStore",
    "SearchHit",
    "ServerStore",
    "VectorStore",
    "open_store",
]


def open_store(settings: Settings) -> VectorStore:
    """The embedded store when no Qdrant URL is set, else the server's collection."""
    if not settings.qdrant_url:
        return EdgeStore(settings.vector_path)
    client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key or None)
    return ServerStore(client, settings.collection)
