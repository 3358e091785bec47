#!/usr/bin/env bash
# Start, join or stop a Ray cluster that mtrl's rollout workers spread over.
#
#   scripts/ray_cluster.sh head [PORT] [CPUS]       on the head machine (default port 6379)
#   scripts/ray_cluster.sh join HEAD_IP:PORT [CPUS] on every other machine (same Python env + mtrl)
#   scripts/ray_cluster.sh stop                     on every machine
#
# Then, on the head:  mtrl train CONFIG ray.address=auto rollout.workers=N
# mtrl prints how many Ray nodes its workers landed on. Ray 2.60 authenticates cluster RPCs with
# a token: the head writes ~/.ray/auth_token; copy that file to every joining machine (or export
# RAY_AUTH_TOKEN there). RAY_AUTH_MODE=token is set below for the ray commands; export it in the
# shell that runs `mtrl train` as well.
set -euo pipefail
export RAY_AUTH_MODE=token
cmd=${1:-}
case "$cmd" in
  head)
    ray get-auth-token --generate >/dev/null
    ray start --head --port="${2:-6379}" ${3:+--num-cpus="$3"} --include-dashboard=false --disable-usage-stats ;;
  join)
    [ -n "${2:-}" ] || { echo "usage: $0 join HEAD_IP:PORT [CPUS]" >&2; exit 2; }
    ray start --address="$2" ${3:+--num-cpus="$3"} --disable-usage-stats ;;
  stop)
    ray stop ;;
  *)
    sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
