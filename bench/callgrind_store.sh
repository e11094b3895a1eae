#!/usr/bin/env bash
# Instructions the server spends per idempotent AssignDevice repeat (gRPC,
# h2load, one call at a time) and per durable move (REST through a gateway
# that is not measured, alternating desktop/mobile on u0/d0), counted by
# callgrind on a server whose 64 users each hold a device, as in
# bench/run.sh's loads. Stable where wall-clock rates on a shared machine
# are not; run it on two builds for a before/after.
#
#   bench/callgrind_store.sh BUILD_DIR     (N=2000 requests each)
# SPLIT=1 also splits each by library and function. h2load counts HTTP
# 200s, not grpc-status (the REST calls here do check their 201s).
# Needs valgrind, h2load, python3. Everything lives in one temp dir and
# every process started here is stopped on exit.
set -euo pipefail
build=$(cd "${1:?usage: bench/callgrind_store.sh BUILD_DIR}" && pwd)
N=${N:-2000}
srv=$build/service/device-assignment-server gw=$build/gateway/device-assignment-gateway cli=$build/cli/device-assignment
tmp=$(mktemp -d /tmp/das-cg-store.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
start() { local name=$1; shift; : >"$tmp/$name.out"; "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" & pid=$!; pids+=("$pid")
  for _ in $(seq 1 600); do addr=$(sed -n 's/.* listening on \(.*\)$/\1/p' "$tmp/$name.out"); [ -n "$addr" ] && return 0; sleep 0.1; done; cat "$tmp/$name.err"; exit 1; }
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/secret"
token=$("$cli" token --secret-file "$tmp/secret" --sub bench --tenant '*' --scope 'devices:assign directory:admin' --ttl 7200)
tenant=0f8fad5b-d9cb-469f-a165-70867728950e
python3 - "$tenant" 64 >"$tmp/directory.json" <<'PY'
import json, sys
t, n = sys.argv[1], int(sys.argv[2])
print(json.dumps({"customers": [{"tenantId": t, "name": "Bench"}],
    "users": [{"tenantId": t, "userId": "u%d" % i, "roles": ["customer_user_uc", "customer_user_uc_softphone"]} for i in range(n)],
    "pbxDevices": [{"tenantId": t, "deviceId": "d%d" % i, "ownerUserId": "u%d" % i} for i in range(n)]}))
PY
python3 - "$tenant" "$tmp" <<'PY'
import struct, sys
def s(field, v):
    b = v.encode(); return bytes([field << 3 | 2, len(b)]) + b
msg = s(1, sys.argv[1]) + s(2, "u0") + s(3, "d0") + bytes([4 << 3, 1])
open(sys.argv[2] + "/assign.grpc", "wb").write(b"\0" + struct.pack(">I", len(msg)) + msg)
PY
moves() { # ADDR COUNT: PUT moves of u0/d0 alternating desktop/mobile, one at a time
python3 - "$1" "$2" "$token" "$tenant" <<'PY'
import http.client, sys
addr, n, token, tenant = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
h, p = addr.rsplit(":", 1)
c = http.client.HTTPConnection(h, int(p), timeout=60)
path = "/v1.0/customers/%s/users/u0/devices/pbx/d0/assign" % tenant
for i in range(n):
    c.request("PUT", path, body='{"clientType":"%s"}' % ("mobile" if i % 2 == 0 else "desktop"),
              headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    if r.status != 201: sys.exit("status %d" % r.status)
PY
}
  mkdir -p "$tmp/cg"
  start server valgrind --tool=callgrind --callgrind-out-file="$tmp/cg/%p" "$srv" --listen 127.0.0.1:0 --store "sqlite:$tmp/b.db" --jwt-hs256-secret-file "$tmp/secret" --log-level warn
  saddr=$addr spid=$pid
  "$cli" --server "$saddr" --token "$token" import "$tmp/directory.json" >/dev/null
  start gateway "$gw" --listen 127.0.0.1:0 --upstream "$saddr" --log-level warn --upstream-timeout-ms 60000
  gaddr=$addr
  h2load -n 20 -c 1 -m 1 -t 1 --data="$tmp/assign.grpc" -H 'content-type: application/grpc' -H 'te: trailers' -H "authorization: Bearer $token" "http://$saddr/deviceassignment.v1.DeviceAssignment/AssignDevice" >/dev/null
  moves "$gaddr" 20
  python3 - "$gaddr" "$token" "$tenant" <<'PY'
import http.client, sys
addr, token, tenant = sys.argv[1:4]
h, p = addr.rsplit(":", 1)
c = http.client.HTTPConnection(h, int(p), timeout=60)
for u in range(1, 64):
    c.request("PUT", "/v1.0/customers/%s/users/u%d/devices/pbx/d%d/assign" % (tenant, u, u), body='{"clientType":"desktop"}',
              headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    if r.status != 201: sys.exit("status %d" % r.status)
PY
  for what in repeat move; do
    callgrind_control -z "$spid" >/dev/null 2>&1
    if [ $what = repeat ]; then
      h2load -n "$N" -c 1 -m 1 -t 1 --data="$tmp/assign.grpc" -H 'content-type: application/grpc' -H 'te: trailers' -H "authorization: Bearer $token" "http://$saddr/deviceassignment.v1.DeviceAssignment/AssignDevice" > "$tmp/h2.txt"
      grep -q "$N succeeded" "$tmp/h2.txt" || { cat "$tmp/h2.txt"; exit 1; }
    else
      moves "$gaddr" "$N"
    fi
    callgrind_control -d "$spid" >/dev/null 2>&1
    f=$(ls -t "$tmp"/cg/*.[0-9]* | sed -n 1p)
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
    echo "callgrind server $what: $((ir / N)) instructions/request"
    if [ -n "${SPLIT:-}" ]; then python3 "$(dirname "$0")/callgrind_split.py" "$f" "$N" 12; fi
  done
