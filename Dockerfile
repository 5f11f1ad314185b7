# One image for the API and the workers (docker-compose.yml picks the command).
#   docker build -t learngene .                                   # CUDA torch (GPU workers)
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu -t learngene:cpu .
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cu124
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from its own index, so the layer is cached across code changes.
RUN pip install "torch>=2.4,<2.15" --index-url "${TORCH_INDEX}"

WORKDIR /app
# The client and the `learngene` command first: the server depends on it (learngene-client).
COPY clients/python ./clients/python
RUN pip install ./clients/python
COPY pyproject.toml README.md alembic.ini ./
COPY learngene ./learngene
COPY service ./service
COPY workers ./workers
COPY migrations ./migrations
COPY data ./data
RUN pip install -e .   # editable: the service finds alembic.ini and migrations/ beside its package

# Not root: the artifact volume is owned by this user.
RUN useradd --create-home --uid 10001 learngene && mkdir -p /data/artifacts && chown -R learngene /data
USER learngene
ENV LEARNGENE_DATA_DIR=/data LEARNGENE_ARTIFACT_DIR=/data/artifacts LEARNGENE_HOST=0.0.0.0
EXPOSE 8000
# JSON logs on stderr (one object a line, with request_id); Prometheus metrics at GET /metrics.
CMD ["learngene", "api"]
