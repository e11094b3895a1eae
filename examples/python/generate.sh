#!/usr/bin/env bash
# Generates the Python stubs of deviceassignment.v1 (and of google.rpc.Status
# for error details) into OUT (default examples/python/gen) with Debian's
# python3-grpc-tools. Needs golang-github-grpc-ecosystem-grpc-gateway-dev
# for google/api/annotations.proto.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/gen}
googleapis=${GOOGLEAPIS_DIR:-/usr/share/gocode/src/github.com/grpc-ecosystem/grpc-gateway/third_party/googleapis}
mkdir -p "$out"
/usr/bin/python3 -m grpc_tools.protoc \
	-I "$root/proto" -I "$googleapis" -I /usr/include \
	--python_out="$out" --grpc_python_out="$out" \
	deviceassignment/v1/device_assignment.proto \
	google/rpc/status.proto google/api/annotations.proto google/api/http.proto
echo "stubs in $out"
