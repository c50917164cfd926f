#!/bin/sh
# The `replica` profile's read replica: on first start, a base backup of `db` with
# `-R` (standby.signal and primary_conninfo), then PostgreSQL as a hot standby.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA" && chmod 700 "$PGDATA"
  until gosu postgres pg_isready -h db -U timebank; do sleep 1; done
  PGPASSWORD="$POSTGRES_PASSWORD" gosu postgres \
    pg_basebackup -h db -U timebank -D "$PGDATA" -R -X stream -c fast
fi
exec docker-entrypoint.sh postgres -c hot_standby=on
