#!/usr/bin/env bash
# Make sure a Redis answers on $REDIS_TEST_URL (default redis://127.0.0.1:6379/15):
# start one if none does, installing Debian's redis-server first if it is missing.
set -euo pipefail
url="${REDIS_TEST_URL:-redis://127.0.0.1:6379/15}"
hostport="${url#redis://}"; hostport="${hostport%%/*}"; hostport="${hostport##*@}"
host="${hostport%%:*}"; port="${hostport##*:}"; [ "$port" = "$host" ] && port=6379

ping() { python3 -c "import redis,sys; redis.Redis(host='$host', port=$port, socket_timeout=1).ping()" 2>/dev/null; }

if ping; then exit 0; fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "ensure_redis: installing redis-server" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi
echo "ensure_redis: starting redis-server on $host:$port" >&2
redis-server --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no \
  --logfile /tmp/allynet-test-redis.log
for _ in $(seq 50); do ping && exit 0; sleep 0.1; done
echo "ensure_redis: Redis did not come up on $host:$port" >&2
exit 1
