# catdog inference service: FastAPI + ONNX Runtime, the bundled models, nothing else.
#
#   docker build -t catdog:1.0 .
#   docker run --rm -p 8000:8000 catdog:1.0                                   # http://localhost:8000
#
# GPU variant: onnxruntime-gpu on an NVIDIA CUDA 12 + cuDNN 9 runtime base (Python comes from apt there):
#   docker build -t catdog:1.0-gpu --build-arg VARIANT=gpu \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 .
#   docker run --rm --gpus all -p 8000:8000 -e CATDOG_PROVIDERS=cuda catdog:1.0-gpu
#
# Build args:
#   BASE_IMAGE   any Debian/Ubuntu image with python3 >= 3.11 (or none: it is installed with apt)
#   VARIANT      cpu (default: onnxruntime) | gpu (onnxruntime-gpu, same version constraint)
#   VERSION, REVISION, SOURCE, CREATED   OCI labels (CI passes the git tag and commit)
#
# Listens on 0.0.0.0:8000 as UID 10001 (not the seed's port 80: a non-root process cannot bind ports below
# 1024 under host networking or Kubernetes). docs/containers.md has measured size, build and start times.

ARG BASE_IMAGE=python:3.11-slim

# ---- base: Python >= 3.11 with venv; the GPU base (CUDA runtime images carry no Python) gets the distribution's
FROM ${BASE_IMAGE} AS base
# hadolint ignore=DL3008
RUN if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# ---- builder: a virtualenv with the runtime dependencies, then the package itself ---------------------
FROM base AS builder
ARG VARIANT=cpu
WORKDIR /src
# /opt/venv becomes the image's environment; /opt/tools holds the build tooling and never leaves this stage.
RUN python3 -m venv /opt/venv && python3 -m venv /opt/tools
# Dependencies first, from pyproject.toml alone: this layer survives every source change. Wheels only, so
# no compiler is ever needed; pip and setuptools are then removed from the runtime venv.
COPY pyproject.toml ./
COPY scripts/runtime-requirements.py scripts/
RUN python3 scripts/runtime-requirements.py --variant "${VARIANT}" pyproject.toml > requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: -r requirements.txt \
 && /opt/venv/bin/pip uninstall -y -q pip setuptools
# Then the package (code, templates, static files, metadata) into its own tree, so a code change never
# re-copies the dependency layer. `catdog` launcher: the venv's interpreter running service.cli.
COPY README.md ./
COPY service/ service/
RUN /opt/tools/bin/pip install --no-cache-dir --no-deps --no-compile --target /opt/catdog . \
 && /opt/venv/bin/python -m compileall -q --invalidation-mode checked-hash /opt/catdog \
 && rm -rf /opt/catdog/bin && mkdir /opt/catdog/bin \
 && printf '#!/opt/venv/bin/python\nimport sys\n\nfrom service.cli import main\n\nsys.exit(main())\n' \
      > /opt/catdog/bin/catdog \
 && chmod 0755 /opt/catdog/bin/catdog

# ---- runtime ------------------------------------------------------------------------------------------
FROM base AS runtime
ARG VARIANT=cpu
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/catdog/catdog
ARG CREATED=
LABEL org.opencontainers.image.title="catdog" \
      org.opencontainers.image.description="Cats-vs-dogs image classification served with FastAPI and ONNX Runtime" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.catdog.variant="${VARIANT}"

# A fixed, unprivileged identity (UID/GID 10001) that Kubernetes' runAsNonRoot can verify numerically.
RUN groupadd --gid 10001 catdog \
 && useradd --no-log-init --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin catdog

# Largest and least often changed first: dependencies, then models, then code. All owned by root and
# read-only to the service, which writes nothing but (optionally) upload spill files to /tmp.
COPY --from=builder /opt/venv /opt/venv
COPY models/ /app/models/
COPY --from=builder /opt/catdog /opt/catdog

ENV PATH=/opt/catdog/bin:/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/catdog \
    CATDOG_HOST=0.0.0.0 \
    CATDOG_PORT=8000 \
    CATDOG_GRPC_PORT=8001 \
    CATDOG_MODEL_DIR=/app/models \
    CATDOG_LOG_FORMAT=json
WORKDIR /app
USER 10001:10001
# HTTP (catdog's routes and the Open Inference Protocol's /v2), and the Open Inference Protocol over gRPC.
EXPOSE 8000 8001

# Liveness over the loopback with the standard library (no curl in the image); follows CATDOG_PORT.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:' + os.environ.get('CATDOG_PORT', '8000') + '/livez', timeout=2)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["catdog"]
CMD ["serve"]
