#!/bin/sh
# docker-entrypoint-initdb.d (first start of `db` only): the read replica of the `replica`
# profile may stream from this server as the service's role.
echo "host replication timebank all scram-sha-256" >> "$PGDATA/pg_hba.conf"
