# One image for every triage process (migrate, worker, beat, serve); see docker-compose.yml.
# Built from the wheel, so the image runs what `pip install triage-<version>-py3-none-any.whl`
# gives anyone: the config, the schema and the migrations inside the package.
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY triage ./triage
COPY config ./config
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim
COPY --from=wheel /dist /dist
RUN pip install --no-cache-dir /dist/*.whl && rm -rf /dist \
    && useradd --create-home --uid 10001 triage && mkdir -p /app/var && chown triage /app/var
WORKDIR /app
USER triage
EXPOSE 8000
# The default command is the HTTP service; its /healthz answers 200 when the database and the
# broker do. docker-compose.yml gives the worker and beat their own checks.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=5)"]
CMD ["triage", "serve", "--host", "0.0.0.0", "--port", "8000"]
