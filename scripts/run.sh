#!/usr/bin/env bash
# `make run`: the server on SQLite and the gateway on loopback, the example
# directory imported, a dev token printed with ready-to-paste curl commands.
# Stays in the foreground showing both logs; Ctrl-C stops both.
#
# Environment: BUILD_DIR (default build), RUN_GRPC (default
# 127.0.0.1:50051), RUN_HTTP (default 127.0.0.1:8080).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${BUILD_DIR:-build}
grpc_addr=${RUN_GRPC:-127.0.0.1:50051}
http_addr=${RUN_HTTP:-127.0.0.1:8080}
var=./var
demo_tenant=6fa459ea-ee8a-4ca4-894e-db77e160355e

die() {
	echo "make run: $*" >&2
	exit 1
}

# The programs live where their folder's CMakeLists puts them; find them by
# name so a move of a target does not break the demo.
find_program() {
	local p
	p=$(find "$build" -type f -name "$1" -perm -u+x -print -quit 2>/dev/null)
	[[ -n $p ]] || die "$1 not found under $build/ (did 'make build' succeed?)"
	printf '%s\n' "$p"
}
server=$(find_program device-assignment-server)
gateway=$(find_program device-assignment-gateway)
cli=$(find_program device-assignment)

# A port someone already answers on: say so before starting anything.
port_is_busy() {
	local host=${1%:*} port=${1##*:}
	(exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}
for a in "$grpc_addr" "$http_addr"; do
	if port_is_busy "$a"; then
		die "port ${a##*:} on ${a%:*} is busy (another 'make run'? see: ss -ltnp 'sport = :${a##*:}'); stop it or set RUN_GRPC/RUN_HTTP"
	fi
done

mkdir -p "$var"
if [[ ! -s $var/jwt-secret ]]; then
	(umask 077 && openssl rand -hex 32 >"$var/jwt-secret.tmp")
	mv "$var/jwt-secret.tmp" "$var/jwt-secret"
	echo "make run: generated a new HS256 secret in $var/jwt-secret"
fi

server_pid=
gateway_pid=
tail_pid=
stop_all() {
	trap - INT TERM EXIT
	local p
	for p in $tail_pid $gateway_pid $server_pid; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in $tail_pid $gateway_pid $server_pid; do
		wait "$p" 2>/dev/null || true
	done
}
on_signal() {
	echo
	echo "make run: stopping gateway and server"
	stop_all
	exit 0
}
trap on_signal INT TERM
trap stop_all EXIT

# Waits until a program printed its "listening on" line; fails when it
# exited instead or took longer than 30 s.
wait_listening() {
	local name=$1 pid=$2 log=$3 i
	for ((i = 0; i < 300; i++)); do
		if grep -q "$name listening on " "$log" 2>/dev/null; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "make run: $name exited during start-up; its log:" >&2
			sed 's/^/  /' "$log" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "make run: $name did not report listening within 30 s; its log:" >&2
	sed 's/^/  /' "$log" >&2
	return 1
}

: >"$var/server.log"
: >"$var/gateway.log"
"$server" --listen "$grpc_addr" \
	--store "sqlite:$var/device-assignment.db" \
	--jwt-hs256-secret-file "$var/jwt-secret" >>"$var/server.log" 2>&1 &
server_pid=$!
wait_listening device-assignment-server "$server_pid" "$var/server.log"

"$gateway" --listen "$http_addr" --upstream "$grpc_addr" \
	>>"$var/gateway.log" 2>&1 &
gateway_pid=$!
wait_listening device-assignment-gateway "$gateway_pid" "$var/gateway.log"

# Ready means: the server answers gRPC health, the gateway answers /readyz
# (which needs the upstream).
ready=false
for ((i = 0; i < 100; i++)); do
	if "$cli" --server "$grpc_addr" health >/dev/null 2>&1 &&
		curl -fsS -o /dev/null "http://$http_addr/readyz" 2>/dev/null; then
		ready=true
		break
	fi
	sleep 0.1
done
$ready || die "server or gateway not ready after 10 s (logs in $var/)"

admin_token=$("$cli" token --secret-file "$var/jwt-secret" --sub make-run \
	--tenant '*' --scope 'directory:admin' --ttl 600)
"$cli" --server "$grpc_addr" --token "$admin_token" \
	import examples/directory.json >/dev/null ||
	die "importing examples/directory.json failed"

token=$("$cli" token --secret-file "$var/jwt-secret" --sub dev \
	--tenant '*' --scope 'devices:assign directory:admin ledger:read' \
	--ttl 86400)

base="http://$http_addr/v1.0/customers/$demo_tenant/users"
cat <<EOF

  device-assignment-server  grpc  $grpc_addr  (store: $var/device-assignment.db)
  device-assignment-gateway rest  http://$http_addr
  examples/directory.json imported (customer $demo_tenant, 2 included seats)

  Dev token (24 h, all tenants):
    export DAS_TOKEN='$token'

  Assign alice's desk phone as her desktop softphone (201):
    curl -si -X POST '$base/alice/devices/pbx/alice-desk-01/assign' -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{"clientType":"desktop"}'

  List alice's softphones:
    curl -s '$base/alice/devices/pbx' -H "Authorization: Bearer $token"

  API docs: http://$http_addr/docs  (OpenAPI: http://$http_addr/openapi.json)

  More calls in README.md. Logs follow; Ctrl-C stops both programs.

EOF

tail -n 0 -f "$var/server.log" "$var/gateway.log" &
tail_pid=$!
# Foreground until Ctrl-C, or until one of the programs dies by itself.
set +e
wait -n "$server_pid" "$gateway_pid"
rc=$?
set -e
echo "make run: a program exited on its own (status $rc); stopping the other" >&2
exit 1
