"""Where to set RAGQ_MIN_RELEVANCE: best-passage similarity of answerable vs unanswerable questions.

    .venv/bin/python bench/grounding.py --data DIR [--answerable 100] [--unanswerable 100]
                                        [--distractors 200]

DIR (or RAGQ_BENCH_DATA) is a BEIR folder such as SciFact. The judged claims (qrels) are split
in two: the relevant abstracts of the first `--answerable` claims are "ingested" (title and text,
parsed and chunked as the ingest worker does), with `--distractors` other abstracts; the relevant
abstracts of the next `--unanswerable` claims are left out, so those claims ask about something
the collection does not hold (a hard case: the collection is still biomedical). A few off-topic
questions (cooking, sport, software) are a third, easy set. Every question's best-passage score
is the cosine similarity of its embedding to the closest chunk, with the embedding model in this
process (no service). For each threshold the script prints the share of answerable questions
kept (score >= threshold) and of unanswerable and off-topic ones refused. The last line is one
JSON object with the score quantiles of each set.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from benchdata import CORPUS, QRELS, QUERIES, add_data_argument, data_folder

from common.chunking import chunk_sections
from common.models import embedding_model_path
from common.parsing import parse
from common.settings import Settings

OFF_TOPIC = [
    "How long should sourdough bread rise before baking?",
    "Who won the football World Cup final in 1998?",
    "How do I configure a reverse proxy in nginx?",
    "What is the best way to learn the guitar chords for beginners?",
    "Which wine goes with grilled salmon?",
    "How do I rebase a branch in git?",
    "What are the rules of cricket's leg before wicket?",
    "How many litres of paint do I need for a bedroom?",
    "When does the ferry to the island leave on Sundays?",
    "How do I change a flat bicycle tyre?",
    "What is the capital of Mongolia?",
    "How do I make a budget spreadsheet in LibreOffice?",
    "What time do the shops close on public holidays?",
    "How do I train a puppy to walk on a lead?",
    "Which chess opening suits aggressive players?",
    "How do I reset my router's password?",
    "What is a good recipe for lemon meringue pie?",
    "How tall is the Eiffel Tower?",
    "How do I write a cover letter for a job application?",
    "What should I pack for a week of hiking in the Alps?",
]
THRESHOLDS = [round(0.1 + 0.05 * i, 2) for i in range(11)]


def read_jsonl(path: Path) -> dict[str, dict[str, str]]:
    """The records of a JSON-lines file by their `_id`."""
    with path.open(encoding="utf-8") as f:
        return {row["_id"]: row for row in map(json.loads, f)}


def read_qrels(path: Path) -> dict[str, set[str]]:
    """Relevant corpus ids by query id."""
    relevant: dict[str, set[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        query_id, corpus_id, score = line.split("\t")
        if int(score) > 0:
            relevant.setdefault(query_id, set()).add(corpus_id)
    return relevant


@dataclass(frozen=True)
class Claims:
    """A BEIR folder's abstracts, claims and judgements, with the judged claim ids shuffled."""

    corpus: dict[str, dict[str, str]]
    queries: dict[str, dict[str, str]]
    qrels: dict[str, set[str]]
    judged: list[str]


def judged_claims(folder: Path, seed: int) -> Claims:
    """Read the folder; its judged claims in an order shuffled by `seed`."""
    queries = read_jsonl(folder / QUERIES)
    qrels = read_qrels(folder / QRELS)
    judged = sorted(q for q in qrels if q in queries)
    random.Random(seed).shuffle(judged)
    return Claims(read_jsonl(folder / CORPUS), queries, qrels, judged)


def main() -> None:
    """Measure and print the table, then one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_argument(parser)
    parser.add_argument("--answerable", type=int, default=100)
    parser.add_argument("--unanswerable", type=int, default=100)
    parser.add_argument("--distractors", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    folder = data_folder(parser, args.data, [CORPUS, QUERIES, QRELS])
    claims = judged_claims(folder, args.seed)
    corpus, queries, qrels, judged = claims.corpus, claims.queries, claims.qrels, claims.judged
    answerable = judged[: args.answerable]
    unanswerable = judged[args.answerable : args.answerable + args.unanswerable]
    kept = set().union(*(qrels[q] for q in answerable))
    left_out = set().union(*(qrels[q] for q in unanswerable)) - kept
    others = sorted(set(corpus) - kept - left_out)
    distractors = random.Random(args.seed).sample(others, min(args.distractors, len(others)))
    documents = sorted(kept & set(corpus)) + distractors

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    settings = Settings()
    model = SentenceTransformer(embedding_model_path(settings))
    chunks = []
    for doc_id in documents:
        doc = corpus[doc_id]
        parsed = parse(f"{doc.get('title', '')}\n\n{doc['text']}".encode(), "abstract.txt")
        for chunk in chunk_sections(
            parsed.sections, model.tokenizer, settings.chunk_tokens, settings.chunk_overlap_tokens
        ):
            chunks.append(chunk.text)
    passages = model.encode(chunks, normalize_embeddings=True, batch_size=64)

    def best(texts: list[str]) -> np.ndarray:
        vectors = model.encode(texts, normalize_embeddings=True, batch_size=64)
        return (vectors @ passages.T).max(axis=1)  # type: ignore[no-any-return]

    sets = {
        "answerable": best([queries[q]["text"] for q in answerable]),
        "unanswerable": best([queries[q]["text"] for q in unanswerable]),
        "off_topic": best(OFF_TOPIC),
    }
    print(
        f"{len(documents)} abstracts ({len(chunks)} chunks); questions: "
        + ", ".join(f"{name} {len(scores)}" for name, scores in sets.items())
    )
    print("threshold  answerable kept  unanswerable refused  off-topic refused")
    for t in THRESHOLDS:
        keep = float((sets["answerable"] >= t).mean())
        refuse = float((sets["unanswerable"] < t).mean())
        off = float((sets["off_topic"] < t).mean())
        print(f"{t:9.2f}  {keep:15.0%}  {refuse:20.0%}  {off:17.0%}")
    quantiles = {
        name: {f"p{p}": round(float(np.percentile(s, p)), 3) for p in (5, 25, 50, 75, 95)}
        for name, s in sets.items()
    }
    print(json.dumps({"documents": len(documents), "chunks": len(chunks), **quantiles}))


if __name__ == "__main__":
    main()
