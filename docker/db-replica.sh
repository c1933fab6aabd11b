#!/bin/sh
# A read-only hot standby of the primary, streaming its WAL (docker-compose.yml's db-replica;
# tests/searchsite/test_replica.py runs this same script against the embedded Postgres).
# On the first start (empty $PGDATA) it copies the primary with pg_basebackup, which also writes
# the standby's primary_conninfo (-R); after that it only starts postgres, which resumes
# streaming where it stopped. Extra arguments are passed to postgres.
#   PGDATA         the standby's data directory
#   PRIMARY_HOST   the primary's host name (or socket directory); PRIMARY_PORT (5432)
#   PRIMARY_USER   a role with REPLICATION (postgres); its password in PGPASSWORD
set -eu
: "${PGDATA:?set PGDATA}" "${PRIMARY_HOST:?set PRIMARY_HOST}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    # pg_basebackup removes what it wrote when it fails, so a retry starts clean.
    until pg_basebackup --pgdata="$PGDATA" --host="$PRIMARY_HOST" --port="${PRIMARY_PORT:-5432}" \
            --username="${PRIMARY_USER:-postgres}" --write-recovery-conf --wal-method=stream --checkpoint=fast; do
        echo "db-replica: cannot copy the primary at $PRIMARY_HOST yet; retrying in 2 s" >&2
        sleep 2
    done
fi
chmod 0700 "$PGDATA"
exec postgres -D "$PGDATA" -c hot_standby=on "$@"
