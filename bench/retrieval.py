"""Retrieval quality and speed on a BEIR dataset, through `POST /v1/search`: dense, sparse, hybrid.

    .venv/bin/python bench/retrieval.py --data DIR [--queries FILE] [--qrels FILE] [--api URL]

Every document of the corpus (title and text, as a user would upload it) goes through the system
(HTTP → Redis → CPU worker: parse, chunk, embed, BM25 terms, upsert); then every judged query runs
through `POST /v1/search` in each mode. The chunks found are reduced to their documents, in rank
order, and scored with nDCG@10 and recall@100 against the qrels. Without --api the script starts
the service itself (own Redis, own data folder), and once it has stopped runs the same hybrid
searches on the bare engine (embedding model, BM25 encoder and the store the service wrote, in this
process, as many threads as HTTP clients) for the speed ratio. DIR (or RAGQ_BENCH_DATA) is a
BEIR folder such as SciFact: corpus.jsonl, queries.jsonl, qrels/train.tsv.

Access groups: each document is ingested with one group, `visible` for about 10 % of them and
`hidden` for the rest. The quality runs use the development key (an admin: it reads all). When
the script started the service, it then times the same hybrid top-10 searches one at a time with
that key and with a key of group `visible` only (90 % of the corpus hidden from it, by the
filter inside the vector search), alternating, and on the bare store with and without the group
condition: the p50 of each and their ratio. The last line is one JSON object: {"ndcg10_dense",
"ndcg10_sparse", "ndcg10_hybrid", "recall100_hybrid", "queries", and with a started service
"search_p50_ms", "search_p50_ms_groups", "store_p50_ms", "store_p50_ms_groups"}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
from benchdata import CORPUS, QRELS, QUERIES, add_data_argument, data_folder

from cli.supervisor import free_port, running
from common.apikeys import create_key, open_redis
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
# The group of the documents the filtered key reads (about 10 %), and of all the others.
VISIBLE, HIDDEN = "visible", "hidden"
LATENCY_TOP_K = 10


def group_of(document_id: str) -> str:
    """A document's access group: `visible` for about one document in ten."""
    return VISIBLE if zlib.crc32(document_id.encode()) % 10 == 0 else HIDDEN


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


def ingest(http: httpx.Client, corpus: Path, clients: int, limit: int | None) -> int:
    """Upload every document (the first `limit`) and wait for their jobs; how many."""

    def submit(doc: dict[str, Any]) -> str:
        title = doc.get("title") or ""
        body = {
            "document_id": doc["_id"],
            "title": title or None,
            "text": f"{title}\n\n{doc['text']}" if title else doc["text"],
            "access_groups": [group_of(doc["_id"])],
        }
        response = http.post("/v1/documents", json=body)
        response.raise_for_status()
        return str(response.json()["job_id"])

    with ThreadPoolExecutor(clients) as pool:
        jobs = list(pool.map(submit, islice(read_jsonl(corpus / CORPUS), limit)))
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


def bare_rate(
    settings: Settings, queries: dict[str, str], clients: int
) -> tuple[float, float, float]:
    """Hybrid searches per second straight on the engines, as many threads as clients; and the
    p50 ms of the store's hybrid top-10 search alone (the query's vectors made beforehand)
    without and with the group condition that hides 90 % of the corpus."""
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
    vectors = model.encode(texts, normalize_embeddings=True, show_progress_bar=False)
    plain: list[float] = []
    filtered: list[float] = []
    for n, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
        sparse = encoder.encode_query(text)
        pair = [(None, plain), ([VISIBLE], filtered)]
        for groups, into in pair if n % 2 else reversed(pair):
            start = time.perf_counter()
            store.search(
                TENANT,
                vector.tolist(),
                LATENCY_TOP_K,
                sparse=sparse,
                mode=SearchMode.HYBRID,
                fusion=settings.search_fusion,
                groups=groups,
            )
            into.append(time.perf_counter() - start)
    store.close()
    return rate, p50(plain), p50(filtered)


def p50(latencies: list[float]) -> float:
    """The median, in milliseconds, of latencies in seconds."""
    return 1000 * statistics.median(latencies)


def group_latency(
    http: httpx.Client, grouped: httpx.Client, queries: dict[str, str]
) -> tuple[float, float]:
    """p50 ms of hybrid top-10 searches over HTTP with the admin key and with the key that
    reads 10 % of the corpus: one query at a time, the two keys alternating which goes first."""

    def timed(client: httpx.Client, text: str) -> float:
        start = time.perf_counter()
        body = {"query": text, "top_k": LATENCY_TOP_K, "mode": "hybrid"}
        client.post("/v1/search", json=body).raise_for_status()
        return time.perf_counter() - start

    plain: list[float] = []
    filtered: list[float] = []
    for n, text in enumerate(queries.values()):
        pair = [(http, plain), (grouped, filtered)]
        for client, into in pair if n % 2 else reversed(pair):
            into.append(timed(client, text))
    return p50(plain), p50(filtered)


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
    with running(settings, dict(os.environ)) as supervisor:
        # The Redis the service runs on (its own one, if RAGQ_REDIS_URL did not answer).
        yield settings.base_url, settings.model_copy(update={"redis_url": supervisor.redis_url})


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
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="ingest only the first N documents, and ask only the queries judged on them",
    )
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
    if args.limit is not None and args.api is None:
        kept = {d["_id"] for d in islice(read_jsonl(corpus / CORPUS), args.limit)}
        qrels = {q: {d: g for d, g in judged.items() if d in kept} for q, judged in qrels.items()}
        qrels = {q: judged for q, judged in qrels.items() if judged}
    queries = {
        q["_id"]: q["text"]
        for q in read_jsonl(args.queries or corpus / QUERIES)
        if q["_id"] in qrels
    }
    scores: dict[str, tuple[float, float, float]] = {}
    latency: dict[str, float] = {}
    with (
        service(args.api) as (base_url, settings),
        httpx.Client(base_url=base_url, timeout=120, headers=bench_auth(settings)) as http,
    ):
        start = time.perf_counter()
        docs = ingest(http, corpus, args.clients, args.limit) if settings else 0
        ingest_s = time.perf_counter() - start
        for row, mode, fusion in RUNS:
            ranked, rate = run_queries(http, queries, mode, fusion, args.clients)
            ndcg = sum(ndcg_at(ranked[q], qrels[q]) for q in queries) / len(queries)
            recall = sum(recall_at(ranked[q], qrels[q]) for q in queries) / len(queries)
            scores[row] = (ndcg, recall, rate)
        if settings:
            key, _ = create_key(open_redis(settings.redis_url), TENANT, groups=[VISIBLE])
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=base_url, timeout=120, headers=headers) as grouped:
                plain, filtered = group_latency(http, grouped, queries)
            latency.update(search_p50_ms=plain, search_p50_ms_groups=filtered)
    if docs:
        print(f"\n{docs} documents ingested in {ingest_s:.0f} s; {len(queries)} queries")
    print(f"| mode | nDCG@10 | recall@100 | queries/s ({args.clients} clients) |")
    print("|---|---|---|---|")
    for mode, (ndcg, recall, rate) in scores.items():
        print(f"| {mode} | {ndcg:.4f} | {recall:.4f} | {rate:.1f} |")
    if settings:
        bare, store_plain, store_filtered = bare_rate(settings, queries, args.clients)
        print(f"bare engine hybrid: {bare:.1f} queries/s; ratio {scores['hybrid'][2] / bare:.3f}")
        latency.update(store_p50_ms=store_plain, store_p50_ms_groups=store_filtered)
        print(
            "hybrid top-10 p50, all documents vs. a key of 10 % of them (90 % hidden by the "
            f"group filter): HTTP {latency['search_p50_ms']:.1f} vs. "
            f"{latency['search_p50_ms_groups']:.1f} ms (ratio "
            f"{latency['search_p50_ms_groups'] / latency['search_p50_ms']:.2f}); store alone "
            f"{store_plain:.2f} vs. {store_filtered:.2f} ms (ratio "
            f"{store_filtered / store_plain:.2f})"
        )
    summary = {
        "ndcg10_dense": round(scores["dense"][0], 4),
        "ndcg10_sparse": round(scores["sparse"][0], 4),
        "ndcg10_hybrid": round(scores["hybrid"][0], 4),
        "recall100_hybrid": round(scores["hybrid"][1], 4),
        "queries": len(queries),
        **{name: round(value, 3) for name, value in latency.items()},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
