# PostgreSQL 15 managed by Patroni (Debian's package), for the `ha` profile of
# docker-compose.yml. Configuration: docker/patroni.yml plus PATRONI_* environment variables.
FROM postgres:15
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       patroni python3-etcd curl \
    && rm -rf /var/lib/apt/lists/*
COPY docker/patroni.yml /etc/patroni.yml
COPY docker/timebank-db-init /usr/local/bin/timebank-db-init
USER postgres
EXPOSE 5432 8008
HEALTHCHECK --interval=5s --timeout=3s CMD curl -fsS http://127.0.0.1:8008/health || exit 1
CMD ["patroni", "/etc/patroni.yml"]
