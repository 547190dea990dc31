"""Retrieval quality and speed on a BEIR dataset, through `POST /v1/search`: dense, sparse, hybrid.

    .venv/bin/python bench/retrieval.py --data DIR [--queries FILE] [--qrels FILE] [--api URL]

Every document of the corpus (title and text, as a user would upload it) goes through the system
(HTTP → Redis → CPU worker: parse, chunk, embed, BM25 terms, upsert); then every judged query runs
through `POST /v1/search` in each mode. The chunks found are reduced to their documents, in rank
order, and scored with nDCG@10 and recall@100 against the qrels. Without --api the script starts
the service itself (own Redis, own data folder), and once it has stopped runs the same hybrid
searches on the bare engine (embedding model, BM25 encoder and the store the service wrote, in this
process, as many threads as HTTP clients) for the speed ratio. DIR (or RAGQ_BENCH_DATA) is a
BEIR folder such as SciFact: corpus.jsonl, queries.jsonl, qrels/train.tsv. The last line is one
JSON object: {"ndcg10_dense", "ndcg10_sparse", "ndcg10_hybrid", "recall100_hybrid", "queries"}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from benchdata import CORPUS, QRELS, QUERIES, add_data_argument, data_folder

from cli.supervisor import free_port, running
from common.settings import Settings

REPO = Path(__file__).resolve().parents[1]
# (row, mode, fusion): hybrid uses the server's RAGQ_SEARCH_FUSION; the other fusion for reference.
RUNS = (
    ("dense", "dense", None),
    ("sparse", "sparse", None),
    ("hybrid", "hybrid", None),
    ("hybrid, rrf", "hybrid", "rrf"),
    ("hybrid, dbsf", "hybrid", "dbsf"),
)
TENANT = "default"


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of a JSON-lines file."""
    with path.open() as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Relevance judgements: query id → {document id: grade}, header line skipped."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open() as fh:
        for line in fh:
            query, doc, grade = line.rstrip("\n").split("\t")[:3]
            if grade.isdigit():
                qrels.setdefault(query, {})[doc] = int(grade)
    return qrels


def ndcg_at(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    """Normalized discounted cumulative gain of the first k documents."""
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    best = sum(grade / math.log2(i + 2) for i, grade in enumerate(ideal))
    return dcg / best if best else 0.0


def recall_at(ranked: list[str], relevant: dict[str, int], k: int = 100) -> float:
    """Share of the relevant documents among the first k."""
    wanted = {doc for doc, grade in relevant.items() if grade > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


def ingest(http: httpx.Client, corpus: Path, clients: int) -> int:
    """Upload every document and wait for all of their jobs; the number of documents."""

    def submit(doc: dict[str, Any]) -> str:
        title = doc.get("title") or ""
        body = {
            "document_id": doc["_id"],
            "title": title or None,
            "text": f"{title}\n\n{doc['text']}" if title else doc["text"],
        }
        response = http.post("/v1/documents", json=body)
        response.raise_for_status()
        return str(response.json()["job_id"])

    with ThreadPoolExecutor(clients) as pool:
        jobs = list(pool.map(submit, read_jsonl(corpus / CORPUS)))
    for job_id in jobs:
        while (record := http.get(f"/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
            time.sleep(0.2)
        assert record["status"] == "succeeded", record
    return len(jobs)


def run_queries(
    http: httpx.Client, queries: dict[str, str], mode: str, fusion: str | None, clients: int
) -> tuple[dict[str, list[str]], float]:
    """Ranked document ids per query for one mode, and the queries per second."""

    def search(text: str) -> list[str]:
        body = {"query": text, "top_k": 100, "mode": mode, "fusion": fusion}
        response = http.post("/v1/search", json=body)
        response.raise_for_status()
        return list(dict.fromkeys(r["document_id"] for r in response.json()["results"]))

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        ranked = dict(zip(queries, pool.map(search, queries.values()), strict=True))
    return ranked, len(queries) / (time.perf_counter() - start)


def bare_rate(settings: Settings, queries: dict[str, str], clients: int) -> float:
    """Hybrid searches per second straight on the engines, as many threads as clients."""
    from sentence_transformers import SentenceTransformer

    from common.models import embedding_model_path
    from common.schemas import SearchMode
    from common.sparse import SparseEncoder
    from common.vectorstore import EdgeStore

    model = SentenceTransformer(embedding_model_path(settings))
    encoder = SparseEncoder()
    store = EdgeStore(settings.vector_path)
    store.ensure(model.get_embedding_dimension() or 384)

    def one(text: str) -> None:
        vector = model.encode([text], normalize_embeddings=True, show_progress_bar=False)[0]
        store.search(
            TENANT,
            vector.tolist(),
            100,
            sparse=encoder.encode_query(text),
            mode=SearchMode.HYBRID,
            fusion=settings.search_fusion,
        )

    texts = list(queries.values())
    for text in texts[:10]:
        one(text)
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, texts))
    rate = len(queries) / (time.perf_counter() - start)
    store.close()
    return rate


@contextmanager
def service(api: str | None) -> Iterator[tuple[str, Settings | None]]:
    """The API's base URL, and the settings of the service if this run started it."""
    if api:
        yield api, None
        return
    data = Path(tempfile.mkdtemp(prefix="ragq-bench-retrieval-"))
    os.environ.update(
        {
            "RAGQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "RAGQ_DATA_DIR": str(data),
            "RAGQ_CACHE_DIR": str(REPO / ".cache"),
            "RAGQ_API_PORT": str(free_port()),
            "RAGQ_FLOWER_PORT": str(free_port()),
            "RAGQ_RATE_LIMIT_REQUESTS": "0",
            "HF_HUB_OFFLINE": "1",
        }
    )
    settings = Settings()
    with running(settings, dict(os.environ)):
        yield settings.base_url, settings


def bench_auth(settings: Settings | None) -> dict[str, str]:
    """RAGQ_API_KEY, else the development key of the service this run started."""
    stored = settings.key_file.read_text().strip() if settings else ""
    key = os.environ.get("RAGQ_API_KEY") or stored
    return {"Authorization": f"Bearer {key}"}


def main() -> None:
    """Ingest, query in each mode, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--queries", type=Path, default=None, help="default: DATA/queries.jsonl")
    parser.add_argument("--qrels", type=Path, default=None, help="default: DATA/qrels/train.tsv")
    parser.add_argument("--api", default=None, help="use a running API instead of starting one")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    args = parser.parse_args()
    # A running API (--api) has its documents already: the corpus itself is not read then.
    needs = [
        name
        for name, given in ((CORPUS, args.api), (QUERIES, args.queries), (QRELS, args.qrels))
        if given is None
    ]
    corpus = data_folder(parser, args.data, needs)
    for option, path in (("--queries", args.queries), ("--qrels", args.qrels)):
        if path is not None and not path.is_file():
            parser.error(f"{option} {path} does not exist")

    qrels = read_qrels(args.qrels or corpus / QRELS)
    queries = {
        q["_id"]: q["text"]
        for q in read_jsonl(args.queries or corpus / QUERIES)
        if q["_id"] in qrels
    }
    scores: dict[str, tuple[float, float, float]] = {}
    with (
        service(args.api) as (base_url, settings),
        httpx.Client(base_url=base_url, timeout=120, headers=bench_auth(settings)) as http,
    ):
        start = time.perf_counter()
        docs = ingest(http, corpus, args.clients) if settings else 0
        ingest_s = time.perf_counter() - start
        for row, mode, fusion in RUNS:
            ranked, rate = run_queries(http, queries, mode, fusion, args.clients)
            ndcg = sum(ndcg_at(ranked[q], qrels[q]) for q in queries) / len(queries)
            recall = sum(recall_at(ranked[q], qrels[q]) for q in queries) / len(queries)
            scores[row] = (ndcg, recall, rate)
    if docs:
        print(f"\n{docs} documents ingested in {ingest_s:.0f} s; {len(queries)} queries")
    print(f"| mode | nDCG@10 | recall@100 | queries/s ({args.clients} clients) |")
    print("|---|---|---|---|")
    for mode, (ndcg, recall, rate) in scores.items():
        print(f"| {mode} | {ndcg:.4f} | {recall:.4f} | {rate:.1f} |")
    if settings:
        bare = bare_rate(settings, queries, args.clients)
        print(f"bare engine hybrid: {bare:.1f} queries/s; ratio {scores['hybrid'][2] / bare:.3f}")
    summary = {
        "ndcg10_dense": round(scores["dense"][0], 4),
        "ndcg10_sparse": round(scores["sparse"][0], 4),
        "ndcg10_hybrid": round(scores["hybrid"][0], 4),
        "recall100_hybrid": round(scores["hybrid"][1], 4),
        "queries": len(queries),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
