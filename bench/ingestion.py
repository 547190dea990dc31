"""Ingestion through the whole system versus bare sentence-transformers, in the same run.

    .venv/bin/python bench/ingestion.py --data PATH [--docs 5183] [--group 100]

System: the SciFact corpus (the BEIR folder of --data or RAGQ_BENCH_DATA, read at run time)
uploaded as batches of files over HTTP → Redis → CPU worker (parse, chunk, embed, BM25 terms,
upsert into the embedded store); timed from the first upload to the last finished job. Bare: the
very same chunk texts through `SentenceTransformer.encode` in this process, after the service has
stopped. Then dense and hybrid search latency at the final collection size, on the store the
system wrote. The last line is one JSON object: {"ratio", "system_chunks_s", "bare_chunks_s",
"points", "search_p50_ms", "search_p95_ms", "hybrid_p50_ms"}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from benchdata import CORPUS, QUERIES, add_data_argument, data_folder

from cli.supervisor import free_port, running
from common.chunking import chunk_sections
from common.models import embedding_model_path
from common.parsing import parse
from common.schemas import SearchMode
from common.settings import Settings
from common.sparse import SparseEncoder
from common.vectorstore import EdgeStore

REPO = Path(__file__).resolve().parents[1]
TENANT = "default"


def load(data: Path, docs: int) -> tuple[list[tuple[str, bytes]], list[str]]:
    """(filename, bytes) of the first `docs` abstracts, and the claims as queries."""
    files = []
    with (data / CORPUS).open() as fh:
        for _, line in zip(range(docs), fh, strict=False):
            doc = json.loads(line)
            files.append((f"{doc['_id']}.txt", f"{doc['title']}\n\n{doc['text']}".encode()))
    with (data / QUERIES).open() as fh:
        queries = [json.loads(line)["text"] for line in fh]
    return files, queries


def run_system(settings: Settings, files: list[tuple[str, bytes]], group: int) -> tuple[float, int]:
    """Seconds from first upload to last finished job, and the chunks written."""
    with (
        running(settings, dict(os.environ)) as supervisor,
        httpx.Client(
            base_url=settings.base_url,
            timeout=600,
            headers={"Authorization": f"Bearer {supervisor.api_key}"},
        ) as http,
    ):
        start = time.perf_counter()
        batches = []
        for offset in range(0, len(files), group):
            parts = [("files", f) for f in files[offset : offset + group]]
            response = http.post("/v1/documents:batch", files=parts)
            response.raise_for_status()
            batches.append(response.json()["batch_id"])
        # As `ragq ingest` does: the counts of the oldest unfinished batch (jobs run in order).
        summaries: dict[str, dict[str, Any]] = {}
        for batch in batches:
            while True:
                summary = http.get(f"/v1/batches/{batch}", params={"jobs": "false"}).json()
                if summary["finished"]:
                    break
                time.sleep(0.5)
            summaries[batch] = summary
        elapsed = time.perf_counter() - start
    states = list(summaries.values())
    failed = sum(n for s in states for k, n in s["counts"].items() if k != "succeeded")
    assert failed == 0, f"{failed} ingest jobs did not succeed"
    return elapsed, sum(s["progress"]["done"] for s in states)


def main() -> None:
    """Run both sides, then search latency; print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=5183)
    parser.add_argument("--group", type=int, default=100, help="files per batch upload")
    parser.add_argument("--queries", type=int, default=500)
    add_data_argument(parser)
    args = parser.parse_args()

    files, queries = load(data_folder(parser, args.data, (CORPUS, QUERIES)), args.docs)
    data = Path(tempfile.mkdtemp(prefix="ragq-bench-ingest-"))
    os.environ.update(
        {
            "RAGQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "RAGQ_DATA_DIR": str(data),
            "RAGQ_CACHE_DIR": str(REPO / ".cache"),
            "RAGQ_API_PORT": str(free_port()),
            "RAGQ_FLOWER_PORT": "0",
            "RAGQ_RATE_LIMIT_REQUESTS": "0",
            "HF_HUB_OFFLINE": "1",
        }
    )
    settings = Settings()
    system_s, chunks = run_system(settings, files, args.group)

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(embedding_model_path(settings))
    texts = [
        chunk.text
        for name, data_bytes in files
        for chunk in chunk_sections(
            parse(data_bytes, name).sections,
            model.tokenizer,
            settings.chunk_tokens,
            settings.chunk_overlap_tokens,
        )
    ]
    assert len(texts) == chunks, (len(texts), chunks)
    start = time.perf_counter()
    model.encode(
        texts,
        batch_size=settings.embedding_batch_size,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    bare_s = time.perf_counter() - start

    store = EdgeStore(settings.vector_path)
    store.ensure(model.get_embedding_dimension() or 384)
    vectors = model.encode(queries[: args.queries], normalize_embeddings=True)
    encoder = SparseEncoder()
    latencies: dict[SearchMode, list[float]] = {SearchMode.DENSE: [], SearchMode.HYBRID: []}
    for text, vector in zip(queries, vectors, strict=False):
        sparse = encoder.encode_query(text)
        for mode, taken in latencies.items():
            t = time.perf_counter()
            store.search(TENANT, vector.tolist(), 10, sparse=sparse, mode=mode)
            taken.append(1000 * (time.perf_counter() - t))
    points = store.count(TENANT)
    store.close()
    cuts = statistics.quantiles(latencies[SearchMode.DENSE], n=100, method="inclusive")
    hybrid = statistics.quantiles(latencies[SearchMode.HYBRID], n=100, method="inclusive")

    system_rate, bare_rate = chunks / system_s, chunks / bare_s
    print(f"\n{len(files)} documents, {chunks} chunks")
    print("| path | seconds | chunks/s |")
    print("|---|---|---|")
    print(f"| system (HTTP → queue → worker → store) | {system_s:.1f} | {system_rate:.1f} |")
    print(f"| bare sentence-transformers | {bare_s:.1f} | {bare_rate:.1f} |")
    print(f"ratio {system_rate / bare_rate:.3f}")
    print(f"dense search over {points} points: p50 {cuts[49]:.2f} ms, p95 {cuts[94]:.2f} ms")
    print(
        f"hybrid search (dense and sparse, fused): p50 {hybrid[49]:.2f} ms, p95 {hybrid[94]:.2f} ms"
    )
    summary = {
        "ratio": round(system_rate / bare_rate, 3),
        "system_chunks_s": round(system_rate, 1),
        "bare_chunks_s": round(bare_rate, 1),
        "points": points,
        "search_p50_ms": round(cuts[49], 3),
        "search_p95_ms": round(cuts[94], 3),
        "hybrid_p50_ms": round(hybrid[49], 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
