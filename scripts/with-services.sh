#!/usr/bin/env bash
# Run a command with PostgreSQL (127.0.0.1:5432) and an S3 server (SeaweedFS, 127.0.0.1:8333) available, then stop
# whichever of the two this script had to start; Debian's Chromium is installed first if it is missing (the web UI's
# browser tests drive it). Fails loudly when any of them cannot be had.
#   scripts/with-services.sh COMMAND [ARGS...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
started_pg="" started_s3=""
pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || started_pg=yes
curl -s -o /dev/null http://127.0.0.1:8333/ || started_s3=yes
cleanup() {
  if [ -n "$started_s3" ]; then bash "$here/ensure-seaweedfs.sh" stop; fi
  if [ -n "$started_pg" ]; then pg_ctlcluster "$(ls /etc/postgresql | sort -V | tail -1)" main stop || true; fi
}
trap cleanup EXIT
bash "$here/ensure-chromium.sh"
bash "$here/ensure-postgres.sh"
bash "$here/ensure-seaweedfs.sh"
"$@"
