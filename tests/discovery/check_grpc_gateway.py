#!/usr/bin/python3
"""grpc-gateway from our own .proto serves exactly the gateway's routes.

Runs Debian's protoc-gen-grpc-gateway on proto/deviceassignment/v1/*.proto,
reads every (method, pattern) pair the generated Go code registers, and
compares them with the route table (route_table tool): every route the
gateway answers with an RPC must be generated, and nothing else may be.

usage: check_grpc_gateway.py --route-table EXE --proto-dir DIR
       --googleapis DIR --wkt DIR
"""
import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Proto field of a path variable -> the route table's capture.
FIELD_TO_CAPTURE = {
    "account_tenant_id": "{A}",
    "customer_tenant_id": "{T}",
    "user_id": "{U}",
    "device_id": "{D}",
}

# grpc-gateway v1 runtime opcodes (utilities.OpCode).
OP_PUSH, OP_LIT_PUSH, OP_CONCAT_N, OP_CAPTURE = 1, 2, 4, 5

PATTERN_RE = re.compile(
    r"(pattern_\w+) = runtime\.MustPattern\(runtime\.NewPattern\(1, "
    r"\[\]int\{([0-9, ]*)\}, \[\]string\{([^}]*)\}, \"([^\"]*)\"\)\)")
HANDLE_RE = re.compile(r'mux\.Handle\("([A-Z]+)", (pattern_\w+),')


def decode(ops, pool, verb):
    """The path template of a grpc-gateway opcode program."""
    segments = []
    codes = list(zip(ops[0::2], ops[1::2]))
    for code, arg in codes:
        if code == OP_LIT_PUSH:
            segments.append(pool[arg])
        elif code == OP_PUSH:
            segments.append("*")
        elif code == OP_CONCAT_N:
            pass
        elif code == OP_CAPTURE:
            name = pool[arg]
            if segments[-1] != "*" or name not in FIELD_TO_CAPTURE:
                raise ValueError(f"unexpected capture {name!r}")
            segments[-1] = FIELD_TO_CAPTURE[name]
        else:
            raise ValueError(f"unexpected opcode {code}")
    if "*" in segments or verb:
        raise ValueError(f"unexpected wildcard or verb in {segments} {verb}")
    return "/" + "/".join(segments)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--route-table", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--googleapis", required=True)
    ap.add_argument("--wkt", required=True)
    a = ap.parse_args()

    plugin = shutil.which("protoc-gen-grpc-gateway")
    if not plugin:
        sys.exit("protoc-gen-grpc-gateway not found: install golang-grpc-gateway "
                 "(deps/debian-packages.txt, scripts/deps.sh test)")
    table = json.loads(subprocess.run([a.route_table], check=True,
                                      capture_output=True, text=True).stdout)
    want = {(r["method"], r["path"]) for r in table["routes"] if r["upstream"]}
    if not want:
        sys.exit("the route table has no upstream route")

    protos = sorted(str(p.relative_to(a.proto_dir))
                    for p in Path(a.proto_dir, "deviceassignment").rglob("*.proto"))
    with tempfile.TemporaryDirectory(prefix="das-grpc-gateway-") as out:
        subprocess.run(["protoc", f"-I{a.proto_dir}", f"-I{a.wkt}",
                        f"-I{a.googleapis}",
                        f"--plugin=protoc-gen-grpc-gateway={plugin}",
                        f"--grpc-gateway_out=logtostderr=true:{out}", *protos],
                       check=True)
        sources = "".join(p.read_text() for p in Path(out).rglob("*.gw.go"))
    patterns = {}
    for name, ops, pool, verb in PATTERN_RE.findall(sources):
        pool_list = [s.strip().strip('"') for s in pool.split(",") if s.strip()]
        patterns[name] = decode([int(x) for x in ops.split(",")], pool_list, verb)
    got = set()
    for method, name in HANDLE_RE.findall(sources):
        if name not in patterns:
            sys.exit(f"{name} registered but its pattern was not understood")
        got.add((method, patterns[name]))

    for method, path in sorted(got):
        print(f"generated {method:4} {path}")
    missing, extra = sorted(want - got), sorted(got - want)
    for m, p in missing:
        print(f"MISSING from the .proto bindings: {m} {p}")
    for m, p in extra:
        print(f"EXTRA in the .proto bindings (not a gateway route): {m} {p}")
    if missing or extra:
        return 1
    print(f"ok: {len(got)} bindings = the {len(want)} upstream routes of the table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
