# The reference image: a thin layer over the wheel that CI smoke-tests
# (.ci/wheel_smoke.py). Build: docker build -t signoff .   Run: see compose.yaml.

# Stage 1: build the wheel from the project's sources (nothing else is copied).
FROM python:3.12-slim-bookworm AS wheel
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2
COPY pyproject.toml README.md LICENSE ./
COPY approvals ./approvals
COPY gateway_plugin ./gateway_plugin
COPY migrations ./migrations
RUN python -m build --wheel --outdir /dist

# Stage 2: the wheel (with PostgreSQL support) in a venv, run as a non-root user.
FROM python:3.12-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/signoff/bin:$PATH \
    SIGNOFF_HOST=0.0.0.0 \
    SIGNOFF_PORT=8000 \
    SIGNOFF_DATABASE_URL=sqlite:////var/lib/signoff/signoff.db
COPY --from=wheel /dist/ /tmp/dist/
RUN python -m venv /opt/signoff \
    && wheel="$(echo /tmp/dist/signoff-*.whl)" \
    && /opt/signoff/bin/pip install --no-cache-dir "${wheel}[postgres]" \
    && rm -rf /tmp/dist \
    && useradd --system --uid 10001 --home-dir /var/lib/signoff --create-home signoff
USER 10001
WORKDIR /var/lib/signoff
EXPOSE 8000
# Liveness only (/healthz); orchestrators that want "ready to serve" probe /readyz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# `serve` migrates the database to the current schema before it listens.
CMD ["signoff", "serve"]
