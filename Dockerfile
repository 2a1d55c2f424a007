# syntax=docker/dockerfile:1
#
# The scanfleet image: one image for every role, chosen by the command.
#   docker build -t scanfleet:0.1.0 .
#   docker run --rm scanfleet:0.1.0 db upgrade      # apply the Alembic migrations
#   docker run --rm scanfleet:0.1.0                 # `scanfleet ingest` (the default CMD)
# Configuration is by environment variables (SCANFLEET_DATABASE_URL, SCANFLEET_BROKER_URL,
# SCANFLEET_INGEST_*); see docker-compose.yml and charts/scanfleet for complete examples.

# --- build: install the project and its dependencies into a virtualenv ----------------------
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/scanfleet
ENV PATH=/opt/scanfleet/bin:$PATH

WORKDIR /src
COPY . .
RUN pip install . \
    && scanfleet --help >/dev/null

# --- runtime ----------------------------------------------------------------------------------
FROM python:3.11-slim

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="scanfleet" \
      org.opencontainers.image.description="Distributed security-scanning platform: coordinator, workers, ingest, storage" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# The external tools the workers run (nmap; the built-in checks need nothing).
RUN apt-get update \
    && apt-get install -y --no-install-recommends nmap \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 scanfleet \
    && useradd --system --uid 10001 --gid scanfleet --home-dir /home/scanfleet \
       --create-home --shell /usr/sbin/nologin scanfleet

COPY --from=build /opt/scanfleet /opt/scanfleet

# In a container /metrics must listen on every interface, not only on loopback.
ENV PATH=/opt/scanfleet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SCANFLEET_INGEST_METRICS_ADDR=0.0.0.0 \
    SCANFLEET_INGEST_METRICS_PORT=9464

USER 10001:10001
WORKDIR /home/scanfleet

EXPOSE 9464
# `scanfleet ingest` commits and acks what it holds on SIGTERM (up to ~40 s):
# give it a stop timeout above that (compose: stop_grace_period, Kubernetes:
# terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM

ENTRYPOINT ["scanfleet"]
CMD ["ingest"]
