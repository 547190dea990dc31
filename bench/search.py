"""Search latency of the embedded vector store at a given size (default 100,000 chunks).

    .venv/bin/python bench/search.py [--points 100000] [--queries 1000]

Fills a fresh EdgeStore with random unit vectors of the embedding model's size (384) under one
tenant, in batches as ingestion writes them, then times tenant-filtered top-10 searches. The
last line is one JSON object: {"points", "search_p50_ms", "search_p95_ms"}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid

import numpy as np

from common.vectorstore import ChunkPoint, EdgeStore

DIM = 384


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random unit vectors."""
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def main() -> None:
    """Fill the store, then time searches."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    rng = np.random.default_rng(7)
    store = EdgeStore(tempfile.mkdtemp(prefix="ragq-search-"))
    store.ensure(DIM)
    start = time.perf_counter()
    for offset in range(0, args.points, args.batch):
        n = min(args.batch, args.points - offset)
        doc = f"doc-{offset // args.batch}"
        points = [
            ChunkPoint(
                str(uuid.uuid4()),
                vector.tolist(),
                {"tenant": "bench", "document_id": doc, "title": doc, "text": "", "chunk_index": i},
            )
            for i, vector in enumerate(unit_vectors(rng, n))
        ]
        store.upsert(points)
    fill_s = time.perf_counter() - start
    assert store.count("bench") == args.points

    latencies = []
    for query in unit_vectors(rng, args.queries):
        t = time.perf_counter()
        store.search("bench", query.tolist(), 10)
        latencies.append(1000 * (time.perf_counter() - t))
    store.close()
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    print(f"filled {args.points} points in {fill_s:.1f} s ({args.points / fill_s:.0f} points/s)")
    print(f"search top-10 with tenant filter over {args.queries} queries:")
    print(f"  p50 {cuts[49]:.2f} ms  p95 {cuts[94]:.2f} ms")
    print(
        json.dumps(
            {
                "points": args.points,
                "search_p50_ms": round(cuts[49], 3),
                "search_p95_ms": round(cuts[94], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
