# The API image: `docker build -t backoffice .` ; run with APP_ENV=production,
# SECRET_KEY, DATABASE_URL and TRUSTED_HOSTS set (the service refuses to start without
# them; TRUSTED_HOSTS must include 127.0.0.1 for the health check below).
# It serves; it does not migrate. Upgrade the schema once per release, before the new
# code serves, with the same image and environment:
#   docker run --rm ... backoffice sh -c "flask db upgrade && flask users bootstrap-admin"
# (compose.yaml's one-shot `migrate` service), so containers that start together or
# restart never race on, or repeat, an upgrade.
FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.13 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra otel --no-install-project
COPY src ./src
RUN uv sync --frozen --no-dev --extra otel

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 backoffice \
    && mkdir -p /app/prometheus && chown backoffice /app/prometheus
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY src ./src
COPY migrations ./migrations
COPY deploy ./deploy
COPY .flaskenv ./
ENV PATH="/app/.venv/bin:$PATH" APP_ENV=production HOST=0.0.0.0 PORT=5000 \
    INSTANCE_PATH=/app/instance PYTHONUNBUFFERED=1 \
    PROMETHEUS_MULTIPROC_DIR=/app/prometheus
USER backoffice
EXPOSE 5000
# compose's nginx waits for this (depends_on: condition: service_healthy); the start
# period covers the configuration check deploy/serve makes before Granian starts.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health', timeout=2)"
CMD ["deploy/serve"]
