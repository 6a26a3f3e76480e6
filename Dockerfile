# The tierstream worker image: `docker build -t tierstream .`
#   docker run --rm -e TIERSTREAM_KAFKA_BOOTSTRAP=... -e TIERSTREAM_REDIS_URL=... tierstream worker
# docker-compose.yml builds and runs it (worker, topic-init, demo-producer).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . /app
# Runtime dependencies only, at the versions the tests passed with (constraints.txt).
RUN pip install -c constraints.txt . \
    && useradd --create-home --uid 10001 tierstream \
    && mkdir -p /var/lib/tierstream \
    && chown tierstream /var/lib/tierstream

USER tierstream
# Faust's local data directory (nothing durable: the state lives in Redis).
WORKDIR /var/lib/tierstream

ENTRYPOINT ["tierstream"]
CMD ["worker"]
