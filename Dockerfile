# Face API image (`faceauth api`, port 8000). The ML models run in the separate ML inference image
# (ml_inference.Dockerfile); this one calls it over HTTP.
#   docker build -t faceauth-api .
#   docker compose up -d            # the whole platform: see docker-compose.yml and docs/DEPLOYMENT.md
#
# Lean where it can be: no dev dependencies, no build tools in the final image, no model files. The API installs
# the same `faceauth` package as the ML image, so the package's runtime dependencies (onnxruntime, opencv, the
# wheels that carry the default models, milvus-lite) are in its virtual environment too even though the API never
# loads a model; splitting them out would need an optional extra in pyproject.toml and a new lock.

# --- build: resolve the locked environment with uv into /app/.venv --------------------------------------
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir uv
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
# Dependencies first (their layer is reused until uv.lock changes), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra api --no-install-project
COPY faceauth ./faceauth
RUN uv sync --frozen --no-dev --extra api

# --- runtime: the venv and the code only, as a non-root user ----------------------------------------------
FROM python:3.11-slim AS runtime
RUN useradd --create-home --uid 10001 faceauth
WORKDIR /app
COPY --from=build --chown=faceauth:faceauth /app /app
# In Compose the API is stateless (Milvus server + S3); /app/data only matters for a standalone `docker run`
# on the embedded defaults (milvus-lite file and local images): mount a volume there to keep them.
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    FACEAUTH_API_HOST=0.0.0.0 \
    FACEAUTH_API_PORT=8000 \
    FACEAUTH_DATA_DIR=/app/data
RUN mkdir -p /app/data && chown -R faceauth:faceauth /app/data
USER faceauth
EXPOSE 8000
# /healthz answers once start-up (stores opened) is done; /readyz additionally checks Milvus, S3 and the ML service.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
CMD ["faceauth", "api"]
