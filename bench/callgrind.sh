#!/usr/bin/env bash
# Instructions per read request (GET list through the gateway to the server)
# with metrics and JSON logs off and on, counted by callgrind in both
# programs: stable where wall-clock rates on a shared machine are not.
#
#   bench/callgrind.sh BUILD_DIR TMP_DIR TENANT TOKEN
# (called by bench/run.sh, which made TMP_DIR/directory.json and
# TMP_DIR/secret; each server imports the directory into a database of its
# own, as a server holds its SQLite file alone).
# Knob: N=500 measured requests (after 100 not measured).
set -euo pipefail

build=$1 tmp=$2 tenant=$3 token=$4
N=${N:-500}
server_bin=$build/service/device-assignment-server
gateway_bin=$build/gateway/device-assignment-gateway
cli_bin=$build/cli/device-assignment
cg_pids=()
cg_cleanup() {
	for p in "${cg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${cg_pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cg_cleanup EXIT

# cg_start NAME CMD... : the program under callgrind; sets $cg_addr, $cg_pid.
cg_start() {
	local name=$1
	shift
	: >"$tmp/cg.$name.out" # exists before the child gets to open it
	valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$name.%p" \
		"$@" >"$tmp/cg.$name.out" 2>"$tmp/cg.$name.err" &
	cg_pid=$!
	cg_pids+=("$cg_pid")
	for _ in $(seq 1 600); do
		cg_addr=$(sed -n 's/.* listening on \(.*\)$/\1/p' "$tmp/cg.$name.out")
		[ -n "$cg_addr" ] && return 0
		sleep 0.1
	done
	echo "callgrind: $name did not start" >&2
	cat "$tmp/cg.$name.err" >&2
	exit 1
}

# requests URL COUNT: COUNT GETs on one keep-alive connection, all 200.
requests() {
	python3 - "$1" "$2" "$token" "$tenant" <<'PY'
import http.client, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
n, token, tenant = int(sys.argv[2]), sys.argv[3], sys.argv[4]
c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
path = "/v1.0/customers/%s/users/u0/devices/pbx" % tenant
for i in range(n):
    c.request("GET", path, headers={"Authorization": "Bearer " + token})
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit("status %d" % r.status)
PY
}

# instructions PID: the Ir total of the last dump of that process.
instructions() {
	local f
	f=$(ls -t "$tmp"/cg.*."$1"* | head -1)
	awk '/^(summary|totals):/ {print $2; exit}' "$f"
}

measure() {
	local side=$1
	shift
	local srv_flags=() gw_flags=()
	if [ "$side" = off ]; then
		srv_flags=(--metrics false --log-level warn)
		gw_flags=(--metrics false --log-level warn)
	else
		srv_flags=(--metrics-listen 127.0.0.1:0 --log-format json)
		gw_flags=(--log-format json)
	fi
	cg_start "server-$side" "$server_bin" --listen 127.0.0.1:0 --workers 2 \
		--store "sqlite:$tmp/cg-read-$side.db" --jwt-hs256-secret-file "$tmp/secret" \
		"${srv_flags[@]}"
	local spid=$cg_pid saddr=$cg_addr
	"$cli_bin" --server "$saddr" --token "$token" import "$tmp/directory.json" >/dev/null
	cg_start "gateway-$side" "$gateway_bin" --listen 127.0.0.1:0 \
		--upstream "$saddr" --threads 2 --upstream-timeout-ms 60000 \
		"${gw_flags[@]}"
	local gpid=$cg_pid gaddr=$cg_addr
	requests "http://$gaddr" 100
	callgrind_control -z "$spid" >/dev/null
	callgrind_control -z "$gpid" >/dev/null
	requests "http://$gaddr" "$N"
	callgrind_control -d "$spid" >/dev/null
	callgrind_control -d "$gpid" >/dev/null
	local si gi
	si=$(instructions "$spid")
	gi=$(instructions "$gpid")
	printf '%-28s server %8.0f  gateway %8.0f  instructions/request\n' \
		"callgrind read, $side" "$((si / N))" "$((gi / N))"
	eval "cg_${side}_server=$si cg_${side}_gateway=$gi"
	kill "$gpid" "$spid"
	wait "$gpid" "$spid" 2>/dev/null || true
	cg_pids=()
}

measure off
measure on
awk -v so="$cg_off_server" -v go="$cg_off_gateway" -v sn="$cg_on_server" \
	-v gn="$cg_on_gateway" 'BEGIN {
	printf "callgrind on / off: server %.3f, gateway %.3f, both %.3f\n",
		sn / so, gn / go, (sn + gn) / (so + go) }'
