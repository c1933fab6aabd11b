#!/bin/sh
# Run once by the postgres image when it creates the primary's database (docker-entrypoint-initdb.d):
# let db-replica connect for streaming replication, with the same password as the app.
set -eu
echo "host replication ${POSTGRES_USER} all scram-sha-256" >> "$PGDATA/pg_hba.conf"
