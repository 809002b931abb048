# One image for every triage process (migrate, worker, beat); see docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY triage ./triage
COPY migrations ./migrations
COPY config ./config
RUN pip install --no-cache-dir -e .
RUN useradd --create-home triage && mkdir -p /app/var && chown triage /app/var
USER triage
CMD ["triage", "--help"]
