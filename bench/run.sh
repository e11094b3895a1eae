#!/usr/bin/env bash
# Gateway benchmark: nginx answering a fixed 201 (the ceiling of an HTTP
# hop on this machine) against server + gateway, with wrk doing PUT assigns.
#
#   bench/run.sh [BUILD_DIR]      (default: ./build; DAS_BUILD_DIR also works)
#
# Knobs (env): RUNS=3 DURATION=5s CONNS=32 THREADS=1 (wrk), GW_THREADS=2.
# Every run is short; medians of RUNS are printed with the gateway/nginx
# ratio. Everything runs on loopback ports the kernel picks, in a temporary
# directory removed at exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-${DAS_BUILD_DIR:-$here/../build}}
server_bin=$build/service/device-assignment-server
gateway_bin=$build/gateway/device-assignment-gateway
cli_bin=$build/cli/device-assignment
RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
GW_THREADS=${GW_THREADS:-2}

for b in "$server_bin" "$gateway_bin" "$cli_bin"; do
	[ -x "$b" ] || { echo "missing $b (build first)" >&2; exit 2; }
done
for t in wrk nginx python3; do
	command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] ||
		{ echo "missing $t" >&2; exit 2; }
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

tmp=$(mktemp -d /tmp/das-bench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# start NAME CMD... : runs CMD in the background, waits for its
# "listening on HOST:PORT" line and sets $addr.
start() {
	local name=$1
	shift
	: >"$tmp/$name.out" # exists before the child gets to open it
	"$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	pids+=($!)
	for _ in $(seq 1 150); do
		addr=$(sed -n 's/.* listening on \(.*\)$/\1/p' "$tmp/$name.out")
		[ -n "$addr" ] && return 0
		sleep 0.1
	done
	echo "$name did not start:" >&2
	cat "$tmp/$name.err" >&2
	exit 1
}

stop_last() {
	local p=${pids[-1]}
	kill "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
	unset 'pids[-1]'
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ---- nginx baseline --------------------------------------------------------
nginx_port=$(free_port)
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $tmp/nginx;
	proxy_temp_path $tmp/nginx;
	fastcgi_temp_path $tmp/nginx;
	uwsgi_temp_path $tmp/nginx;
	scgi_temp_path $tmp/nginx;
	server {
		listen 127.0.0.1:$nginx_port;
		location / {
			default_type "application/json; charset=utf-8";
			return 201 '{"status":"success","timestamp":"2019-11-29T16:03:23.9251680Z"}';
		}
	}
}
CONF
"$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' \
	2>"$tmp/nginx.err" &
pids+=($!)
for _ in $(seq 1 50); do
	curl -s -o /dev/null "http://127.0.0.1:$nginx_port/" && break
	sleep 0.1
done

# ---- server, directory, tokens ---------------------------------------------
head -c 32 /dev/urandom | base64 >"$tmp/secret"
start server "$server_bin" --listen 127.0.0.1:0 \
	--store "sqlite:$tmp/bench.db" --jwt-hs256-secret-file "$tmp/secret"
server_addr=$addr
token=$("$cli_bin" token --secret-file "$tmp/secret" --sub bench \
	--tenant '*' --scope 'devices:assign directory:admin' --ttl 3600)
tenant=0f8fad5b-d9cb-469f-a165-70867728950e
USERS=200
python3 - "$tenant" "$USERS" >"$tmp/directory.json" <<'PY'
import json, sys
t, n = sys.argv[1], int(sys.argv[2])
print(json.dumps({
    "customers": [{"tenantId": t, "name": "Bench"}],
    "users": [{"tenantId": t, "userId": "u%d" % i,
               "roles": ["customer_user_uc", "customer_user_uc_softphone"]}
              for i in range(n)],
    "pbxDevices": [{"tenantId": t, "deviceId": "d%d" % i,
                    "ownerUserId": "u%d" % i} for i in range(n)]}))
PY
"$cli_bin" --server "$server_addr" --token "$token" import "$tmp/directory.json" >/dev/null

# ---- wrk scripts -------------------------------------------------------------
cat >"$tmp/one.lua" <<LUA
wrk.method = "PUT"
wrk.path = "/v1.0/customers/$tenant/users/u0/devices/pbx/d0/assign"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
wrk.body = '{"clientType":"desktop"}'
LUA
cat >"$tmp/rotate.lua" <<LUA
-- Each request moves one of $USERS devices to the other client type:
-- every request is a real, ledgered change.
local n, i = $USERS, 0
local types = { "desktop", "mobile" }
local headers = { ["Content-Type"] = "application/json",
                  ["Authorization"] = "Bearer $token" }
function request()
	i = i + 1
	local u = i % n
	local ty = types[(math.floor(i / n) % 2) + 1]
	return wrk.format("PUT",
		"/v1.0/customers/$tenant/users/u" .. u .. "/devices/pbx/d" .. u .. "/assign",
		headers, '{"clientType":"' .. ty .. '"}')
end
LUA

# bench LABEL URL SCRIPT : RUNS runs; prints the median req/s and p99.
declare -A median_rps
bench() {
	local label=$1 url=$2 script=$3 rps=() p99=()
	# Warm-up, not measured.
	wrk -t"$THREADS" -c"$CONNS" -d1s -s "$script" "$url" >/dev/null
	for r in $(seq 1 "$RUNS"); do
		wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$script" \
			"$url" >"$tmp/wrk.txt"
		if grep -q "Non-2xx" "$tmp/wrk.txt"; then
			echo "$label: non-2xx answers:" >&2
			cat "$tmp/wrk.txt" >&2
			exit 1
		fi
		if grep -q "Socket errors" "$tmp/wrk.txt"; then
			echo "$label: $(grep 'Socket errors' "$tmp/wrk.txt")" >&2
		fi
		rps+=("$(awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk.txt")")
		p99+=("$(awk '$1 == "99%" {print $2}' "$tmp/wrk.txt")")
	done
	local m
	m=$(printf '%s\n' "${rps[@]}" | sort -g | sed -n "$(((RUNS + 1) / 2))p")
	median_rps[$label]=$m
	printf '%-28s median %10.0f req/s   runs: %s   p99: %s\n' "$label" \
		"$m" "${rps[*]}" "${p99[*]}"
}

echo "wrk -t$THREADS -c$CONNS -d$DURATION, $RUNS runs each, PUT assign"
bench "nginx fixed 201" "http://127.0.0.1:$nginx_port" "$tmp/one.lua"

for mode in async blocking; do
	threads=$GW_THREADS
	[ "$mode" = blocking ] && threads=${GW_BLOCKING_THREADS:-8}
	start "gateway-$mode" "$gateway_bin" --listen 127.0.0.1:0 \
		--upstream "$server_addr" --mode "$mode" --threads "$threads" \
		--log-level warn
	bench "gateway $mode (repeat)" "http://$addr" "$tmp/one.lua"
	bench "gateway $mode (rotate)" "http://$addr" "$tmp/rotate.lua"
	stop_last
done

for label in "gateway async (repeat)" "gateway blocking (repeat)"; do
	awk -v g="${median_rps[$label]}" -v n="${median_rps[nginx fixed 201]}" \
		-v l="$label" 'BEGIN { printf "ratio %-26s / nginx = %.3f\n", l, g / n }'
done

# ---- metrics and JSON logs: their cost on the read path ----------------------
# Two server + gateway pairs on the same database, up at the same time:
#   off: --metrics false, text logs at warn (no access line at all)
#   on:  metrics counted, --log-format json at info (one access line per call
#        on the server and per request on the gateway), the server's
#        --metrics-listen and the gateway's /metrics scraped every second.
# Runs alternate off/on so both see the same machine; the ratio of the
# medians must be >= 0.97 (the issue's bar).
cat >"$tmp/read.lua" <<LUA
wrk.method = "GET"
wrk.path = "/v1.0/customers/$tenant/users/u0/devices/pbx"
wrk.headers["Authorization"] = "Bearer $token"
LUA
start server-off "$server_bin" --listen 127.0.0.1:0 \
	--store "sqlite:$tmp/bench.db" --jwt-hs256-secret-file "$tmp/secret" \
	--metrics false --log-level warn
start gateway-off "$gateway_bin" --listen 127.0.0.1:0 --upstream "$addr" \
	--threads "$GW_THREADS" --metrics false --log-level warn
off_addr=$addr
start server-on "$server_bin" --listen 127.0.0.1:0 \
	--store "sqlite:$tmp/bench.db" --jwt-hs256-secret-file "$tmp/secret" \
	--metrics-listen 127.0.0.1:0 --log-format json
on_server_metrics=$(sed -n 's/.* metrics on \(.*\)$/\1/p' "$tmp/server-on.out")
start gateway-on "$gateway_bin" --listen 127.0.0.1:0 --upstream "$addr" \
	--threads "$GW_THREADS" --log-format json
on_addr=$addr
(while :; do
	curl -s -o /dev/null "http://$on_addr/metrics"
	curl -s -o /dev/null "$on_server_metrics"
	sleep 1
done) &
pids+=($!)
echo "read path (GET list), metrics + JSON logs off vs on, alternating runs:"
off_rps=() on_rps=()
for url in "http://$off_addr" "http://$on_addr"; do
	wrk -t"$THREADS" -c"$CONNS" -d1s -s "$tmp/read.lua" "$url" >/dev/null
done
for r in $(seq 1 "$RUNS"); do
	for side in off on; do
		url="http://$off_addr"
		[ "$side" = on ] && url="http://$on_addr"
		wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$tmp/read.lua" \
			"$url" >"$tmp/wrk.txt"
		if grep -q "Non-2xx" "$tmp/wrk.txt"; then
			echo "read $side: non-2xx answers:" >&2
			cat "$tmp/wrk.txt" >&2
			exit 1
		fi
		v=$(awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk.txt")
		if [ "$side" = off ]; then off_rps+=("$v"); else on_rps+=("$v"); fi
	done
done
off_m=$(printf '%s\n' "${off_rps[@]}" | sort -g | sed -n "$(((RUNS + 1) / 2))p")
on_m=$(printf '%s\n' "${on_rps[@]}" | sort -g | sed -n "$(((RUNS + 1) / 2))p")
printf '%-28s median %10.0f req/s   runs: %s\n' "read, metrics+logs off" \
	"$off_m" "${off_rps[*]}"
printf '%-28s median %10.0f req/s   runs: %s\n' "read, metrics+json logs on" \
	"$on_m" "${on_rps[*]}"
awk -v a="$on_m" -v b="$off_m" 'BEGIN { r = a / b; note = "";
	if (r < 0.97) note = "; NOT MET on this run";
	printf "ratio on / off = %.3f (bar: >= 0.97%s)\n", r, note }'
echo "  on-side log lines: server $(wc -l <"$tmp/server-on.err"), gateway $(wc -l <"$tmp/gateway-on.err")"
kill "${pids[-1]}" 2>/dev/null || true
wait "${pids[-1]}" 2>/dev/null || true
unset 'pids[-1]'
for _ in 1 2 3 4; do stop_last; done

# Instructions per request under callgrind: a figure the noise of a shared
# machine does not move. CALLGRIND=0 skips it.
if [ "${CALLGRIND:-1}" != 0 ] && command -v valgrind >/dev/null; then
	"$here/callgrind.sh" "$build" "$tmp" "$tenant" "$token"
fi

# ---- h2load straight at the gRPC server (no gateway) -------------------------
if command -v h2load >/dev/null; then
	python3 - "$tenant" >"$tmp/assign.grpc" <<'PY'
import struct, sys
def s(field, v):
    b = v.encode()
    return bytes([field << 3 | 2, len(b)]) + b
msg = s(1, sys.argv[1]) + s(2, "u0") + s(3, "d0") + bytes([4 << 3, 1])
sys.stdout.buffer.write(b"\0" + struct.pack(">I", len(msg)) + msg)
PY
	h2rps=()
	for r in $(seq 1 "$RUNS"); do
		h2load -D "${DURATION%s}" -c 4 -m 8 -t 1 --data="$tmp/assign.grpc" \
			-H 'content-type: application/grpc' -H 'te: trailers' \
			-H "authorization: Bearer $token" \
			"http://$server_addr/deviceassignment.v1.DeviceAssignment/AssignDevice" \
			>"$tmp/h2.txt" 2>&1 || true
		h2rps+=("$(awk '/^finished in/ {print $4}' "$tmp/h2.txt")")
	done
	m=$(printf '%s\n' "${h2rps[@]}" | sort -g | sed -n "$(((RUNS + 1) / 2))p")
	printf '%-28s median %10.0f req/s   runs: %s\n' "raw gRPC (h2load 4x8)" \
		"$m" "${h2rps[*]}"
fi
