#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 with trust auth for user postgres (what the test suite's
# PostgreSQL run uses): start the Debian cluster if it is stopped, install it if it is missing. Fails loudly.
set -euo pipefail
HOST=127.0.0.1 PORT=5432
ready() { pg_isready -q -h "$HOST" -p "$PORT" 2>/dev/null; }
if ready; then exit 0; fi
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "ensure-postgres: PostgreSQL is not installed; installing it from Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -1)
echo "ensure-postgres: starting cluster $version/main" >&2
pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main start
for _ in $(seq 60); do ready && break; sleep 0.5; done
ready || { echo "ensure-postgres: PostgreSQL did not come up on $HOST:$PORT" >&2; exit 1; }
# The suite connects as postgres without a password over TCP: make sure loopback is trusted.
if ! psql -h "$HOST" -p "$PORT" -U postgres -c 'select 1' >/dev/null 2>&1; then
  hba=$(su postgres -c "psql -tAc 'show hba_file'")
  sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
  su postgres -c "psql -qc 'select pg_reload_conf()'" >/dev/null
fi
psql -h "$HOST" -p "$PORT" -U postgres -c 'select 1' >/dev/null
