# syntax=docker/dockerfile:1.7
# The llm worker for NVIDIA GPUs: the `llm` queue on vLLM (the project's `gpu` extra).
#
#   docker build -f docker/gpu-worker.Dockerfile -t ragq/gpu-worker .   (from the repository root)
#
# No model is baked in and none is downloaded at run time: the model folder is mounted at
# /models/llm (RAGQ_LLM_MODEL). To bake one instead, build a child image:
#   FROM ragq/gpu-worker
#   COPY --chown=10001:10001 my-model/ /models/llm/
#
# vllm 0.33 runs on torch 2.14 built for CUDA 13 (its CUDA libraries come as wheels); the base
# image brings the matching user-space setup for the NVIDIA container runtime. Python 3.11 comes
# from uv's standalone builds: the Ubuntu base has a different system Python.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9
ARG PYTHON_VERSION=3.11

FROM ${UV_IMAGE} AS uv

FROM ${CUDA_IMAGE} AS build
ARG PYTHON_VERSION
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1
RUN uv python install "${PYTHON_VERSION}" \
    && uv venv --python "${PYTHON_VERSION}" /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
# Dependencies in their own layer: the project from empty package folders, then without it.
RUN mkdir -p api workers common cli \
    && touch api/__init__.py workers/__init__.py common/__init__.py cli/__init__.py \
    && uv pip install ".[gpu]" \
    && uv pip uninstall ragq \
    && rm -rf api workers common cli build ./*.egg-info
COPY api ./api
COPY workers ./workers
COPY common ./common
COPY cli ./cli
COPY client/ragq_client ./client/ragq_client
RUN uv pip install --no-deps .

FROM ${CUDA_IMAGE} AS runtime
# gcc and libc6-dev: Triton compiles its small launcher stubs at the engine's first start.
# Debian/Ubuntu revisions are not pinned: the base image tag fixes the release, and its security
# updates should land on rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libnuma1 \
    && rm -rf /var/lib/apt/lists/*
ARG UID=10001
RUN groupadd --system --gid "${UID}" ragq \
    && useradd --system --uid "${UID}" --gid ragq --home-dir /home/ragq --create-home \
       --shell /usr/sbin/nologin ragq \
    && mkdir -p /models/llm
COPY --from=build /opt/python /opt/python
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    NUMBA_CACHE_DIR=/tmp/numba \
    RAGQ_LLM_MODEL=/models/llm \
    RAGQ_LLM_MAX_NUM_SEQS=32 \
    RAGQ_METRICS_PORT=9102 \
    WORKER_NODE=llm
WORKDIR /home/ragq
USER 10001:10001
EXPOSE 9102
# Loading the model and capturing CUDA graphs takes minutes: a long start period.
HEALTHCHECK --interval=30s --timeout=20s --start-period=900s --retries=3 \
    CMD ["sh", "-c", "exec celery -A workers.celery_app inspect ping -d \"${WORKER_NODE}@${HOSTNAME}\" --timeout 5"]
# One vLLM engine per process; its batch (RAGQ_LLM_MAX_NUM_SEQS) is the worker's concurrency.
CMD ["sh", "-c", "exec celery -A workers.celery_app worker --concurrency \"${RAGQ_LLM_MAX_NUM_SEQS}\" --queues llm --hostname 'llm@%h' --loglevel INFO --without-mingle --without-gossip"]
