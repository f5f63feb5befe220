# ML inference service image. CPU by default; see docs/DEPLOYMENT.md for the CUDA variant.
#   docker build -f ml_inference.Dockerfile -t faceauth-ml .
#   docker run -p 8001:8001 -v faceauth-models:/app/data/models faceauth-ml

# --- build: resolve the locked environment with uv into /app/.venv --------------------------------------
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir uv
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra ml --no-install-project
COPY faceauth ./faceauth
RUN uv sync --frozen --no-dev --extra ml

# --- runtime: the venv and the code only, as a non-root user ----------------------------------------------
FROM python:3.11-slim AS runtime
RUN useradd --create-home --uid 10001 faceauth
WORKDIR /app
COPY --from=build --chown=faceauth:faceauth /app /app
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    ML_SERVICE_HOST=0.0.0.0 \
    ML_SERVICE_PORT=8001 \
    ML_SERVICE_MODEL_DIR=/app/data/models
RUN mkdir -p /app/data/models && chown -R faceauth:faceauth /app/data
VOLUME ["/app/data/models"]
USER faceauth
EXPOSE 8001
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8001/healthz', timeout=2).status == 200 else 1)"
CMD ["faceauth", "ml"]
