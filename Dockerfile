# modelport, CPU image: gateway, admin UI and the local runtime (CPU engines) in one container.
#
#   docker build -t modelport:0.1.0 .
#   docker run -p 3000:3000 -v modelport-data:/data modelport:0.1.0
#
# CUDA variant (GPU hosts with the NVIDIA container toolkit): PyTorch's CUDA wheels carry their
# own CUDA runtime, so the same slim base works; only the wheel index and the extras change:
#
#   docker build -t modelport:0.1.0-cuda \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 \
#     --build-arg EXTRAS=starter,embeddings,whisper,transformers,image .
#
# and run it with GPUs (examples/fastgpt/docker-compose.gpu.yml). vLLM lives in its own virtual
# environment (scripts/setup-vllm-venv.sh) and is not part of either image.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

# torch is always pinned: an unpinned torch pulls a multi-GB CUDA build into the CPU image.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG EXTRAS=starter,embeddings,whisper

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODELPORT_HOME=/data \
    HF_HOME=/data/huggingface

WORKDIR /app
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml README.md* ./
COPY gateway ./gateway
COPY local_runtime ./local_runtime
COPY admin_ui ./admin_ui
COPY config ./config
# Editable: config/ (modelport.yaml, the catalog) is read from the checkout next to the packages.
RUN pip install -e ".[${EXTRAS}]"

RUN useradd --create-home --uid 1000 modelport && mkdir -p /data && chown modelport /data
USER modelport
VOLUME ["/data"]
EXPOSE 3000

HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=10 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/api/status', timeout=4)"]
CMD ["modelport", "serve", "--host", "0.0.0.0", "--port", "3000"]
