# syntax=docker/dockerfile:1.7
# The ragq API (uvicorn) — Flower runs from this image too, with its own command.
#
#   docker build -f docker/api.Dockerfile -t ragq/api .        (from the repository root)
#
# The API never embeds or generates: it installs the project's core dependencies only (no
# torch, sentence-transformers, vector store or vLLM; those are the `worker` extra).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, in their own layer (rebuilt only when pyproject.toml changes): install the
# project from empty package folders, then remove it and keep its dependencies.
COPY pyproject.toml README.md ./
RUN mkdir -p api workers common cli \
    && touch api/__init__.py workers/__init__.py common/__init__.py cli/__init__.py \
    && pip install . \
    && pip uninstall -y ragq \
    && rm -rf api workers common cli build ./*.egg-info
COPY api ./api
COPY workers ./workers
COPY common ./common
COPY cli ./cli
COPY client/ragq_client ./client/ragq_client
RUN pip install --no-deps . \
    && python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
RUN groupadd --system --gid "${UID}" ragq \
    && useradd --system --uid "${UID}" --gid ragq --home-dir /home/ragq --create-home \
       --shell /usr/sbin/nologin ragq
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    RAGQ_API_HOST=0.0.0.0 \
    RAGQ_API_PORT=8000
WORKDIR /home/ragq
USER 10001:10001
EXPOSE 8000
# /healthz only: the process answers. /readyz also needs a live worker on every queue, which
# is not this container's health (see k8s/base/api.yaml).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
# SSE streams never end by themselves: bound the graceful shutdown below the pod's grace period.
# RAGQ_API_PROCESSES uvicorn processes (api.serve; 2 by default).
CMD ["python", "-m", "api.serve", "--host", "0.0.0.0", "--port", "8000", \
     "--timeout-graceful-shutdown", "20"]
