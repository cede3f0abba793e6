#!/usr/bin/env bash
# The whole cluster on one machine with one command: Redis, N signstream servers sharing channels
# through it, Janus for the channels' video (where installed; JANUS=0: without), and nginx in front
# of them, on loopback (docs/cluster.md). Ctrl-C stops the set.
#   deploy/run-local.sh [N]         N servers (default 3); env: PORT (nginx, 8080), REDIS_PORT (6390),
#                                   JANUS_PORT (Janus's HTTP API, 8188)
# Servers listen on PORT+1 .. PORT+N; logs and generated configs go to a temporary folder it prints.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-3}
PORT=${PORT:-8080}
REDIS_PORT=${REDIS_PORT:-6390}
JANUS_PORT=${JANUS_PORT:-8188}
JANUS=${JANUS:-$(command -v janus >/dev/null && echo 1 || echo 0)}
PY=${PYTHON:-.venv/bin/python}
RUN=$(mktemp -d "${TMPDIR:-/tmp}/signstream-cluster.XXXXXX")
pids=()

stop() {
  trap - EXIT INT TERM
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
  wait || true
}
trap stop EXIT INT TERM

redis-server deploy/redis.conf --port "$REDIS_PORT" --dir "$RUN" >"$RUN/redis.log" 2>&1 &
pids+=($!)

JANUS_API=""
if [ "$JANUS" = 1 ]; then  # ICE on the default route's interface: Janus gathers on no loopback one
  iface=$(awk '$2 == "00000000" { print $1; exit }' /proc/net/route)
  mkdir -p "$RUN/janus"
  for f in deploy/janus/*.jcfg; do
    sed -e "s|^\(\s*port = \)[0-9]*|\1$JANUS_PORT|" -e "s|^\(\s*ice_enforce_list = \)\".*\"|\1\"${iface:-eth0}\"|" \
      "$f" >"$RUN/janus/$(basename "$f")"
  done
  (cd "$RUN" && exec janus -F "$RUN/janus" -C "$RUN/janus/janus.jcfg" >"$RUN/janus.log" 2>&1) &
  pids+=($!)
  until (exec 3<>"/dev/tcp/127.0.0.1/$JANUS_PORT") 2>/dev/null; do
    kill -0 "${pids[-1]}" 2>/dev/null || { echo "janus failed: $RUN/janus.log" >&2; tail -5 "$RUN/janus.log" >&2; exit 1; }
    sleep 0.1
  done
  JANUS_API="http://127.0.0.1:$JANUS_PORT/janus"
fi

for i in $(seq 1 "$N"); do
  sed -e "s|^redis = .*|redis = \"redis://127.0.0.1:$REDIS_PORT/0\"|" -e "s|^process = .*|process = \"s$i\"|" \
    -e "s|^janus = .*|janus = \"$JANUS_API\"|" config.toml >"$RUN/s$i.toml"
  "$PY" -m server.cli serve --config "$RUN/s$i.toml" --host 127.0.0.1 --port $((PORT + i)) >"$RUN/s$i.log" 2>&1 &
  pids+=($!)
done

servers=""
for i in $(seq 1 "$N"); do servers+="        server 127.0.0.1:$((PORT + i));\n"; done
awk -v servers="$servers" '
  /# servers: begin/ { print; printf "%s", servers; skip = 1; next }
  /# servers: end/   { skip = 0 }
  !skip' deploy/nginx.conf | sed -e "s|listen 127.0.0.1:8080;|listen 127.0.0.1:$PORT;|" >"$RUN/nginx.conf"
mkdir -p "$RUN/tmp"

for i in $(seq 1 "$N"); do  # each server up before the balancer sends it anyone
  until grep -q "listening on" "$RUN/s$i.log"; do
    kill -0 "${pids[$((i + JANUS))]}" 2>/dev/null || { echo "server s$i failed: $RUN/s$i.log" >&2; tail -5 "$RUN/s$i.log" >&2; exit 1; }
    sleep 0.2
  done
done
nginx -p "$RUN" -c "$RUN/nginx.conf" 2>"$RUN/nginx.log" &
pids+=($!)
until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
  kill -0 "${pids[-1]}" 2>/dev/null || { echo "nginx failed: $RUN/nginx.log" >&2; cat "$RUN/nginx.log" >&2; exit 1; }
  sleep 0.1
done

echo "signstream cluster: http://127.0.0.1:$PORT/ ($N servers on :$((PORT + 1))-:$((PORT + N)), Redis :$REDIS_PORT${JANUS_API:+, Janus $JANUS_API}; logs in $RUN)"
wait -n "${pids[@]}" || true  # one of them stopped: stop the rest
echo "a process of the cluster stopped; stopping the rest (logs in $RUN)" >&2
