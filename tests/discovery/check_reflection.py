#!/usr/bin/python3
"""gRPC server reflection v1 and v1alpha against the real server.

Debian's python3-grpcio drives the ServerReflectionInfo stream (several
requests on one stream, no token); every FileDescriptorProto it returns is
decoded with python3-protobuf and compared with the same file in the
protoset the build produced. Then --reflection=false must make both
services UNIMPLEMENTED.

usage: check_reflection.py --server EXE --cli EXE --protoset FILE
"""
import argparse
import os
import subprocess
import sys
import tempfile

import grpc
from google.protobuf import descriptor_pb2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from das_stack import Stack  # noqa: E402

REFLECTION_PROTO_DIR = "/usr/share/grpc-proto"
WANT_SERVICES = {
    "deviceassignment.v1.DeviceAssignment",
    "deviceassignment.v1.Directory",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--protoset", required=True)
    a = ap.parse_args()

    with open(a.protoset, "rb") as f:
        fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    protoset = {fd.name: fd for fd in fds.file}

    with tempfile.TemporaryDirectory(prefix="das-reflection-") as gen:
        # The generated package is named grpc.reflection.v1: load it
        # under its own root so it does not shadow the grpc module.
        pkg_root = os.path.join(gen, "pkg")
        os.makedirs(pkg_root)
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc",
                        f"-I{REFLECTION_PROTO_DIR}", f"--python_out={pkg_root}",
                        "grpc/reflection/v1/reflection.proto"], check=True)
        import importlib.util
        spec = importlib.util.spec_from_file_location(
            "das_reflection_pb2",
            os.path.join(pkg_root, "grpc/reflection/v1/reflection_pb2.py"))
        pb = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(pb)

        with Stack(a.server, a.cli) as stack:
            run_checks(stack, pb, protoset)
            hostile_checks(stack, pb)
            open_at_shutdown = open_stream(stack, pb)
        check(stack.exit_codes.get("device-assignment-server") == 0,
              "SIGTERM with a reflection stream open: server exits 0 "
              f"(got {stack.exit_codes.get('device-assignment-server')})")
        open_at_shutdown.close()
        with Stack(a.server, a.cli, server_args=["--reflection=false"]) as stack:
            with grpc.insecure_channel(stack.grpc_addr) as ch:
                for version in ("v1", "v1alpha"):
                    call = stream(ch, pb, version)
                    try:
                        list(call(iter([pb.ServerReflectionRequest(
                            list_services="")]), timeout=10))
                        check(False, f"--reflection=false: {version} answered")
                    except grpc.RpcError as e:
                        check(e.code() == grpc.StatusCode.UNIMPLEMENTED,
                              f"--reflection=false: {version} is {e.code().name}")
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all reflection checks passed")
    return 0


def stream(ch, pb, version):
    return ch.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=pb.ServerReflectionRequest.SerializeToString,
        response_deserializer=pb.ServerReflectionResponse.FromString)


def files_of(resp):
    return [descriptor_pb2.FileDescriptorProto.FromString(b)
            for b in resp.file_descriptor_response.file_descriptor_proto]


def imports_closure(protoset, name, seen=None):
    seen = set() if seen is None else seen
    if name not in seen:
        seen.add(name)
        for d in protoset[name].dependency:
            imports_closure(protoset, d, seen)
    return seen


def run_checks(stack, pb, protoset):
    R = pb.ServerReflectionRequest
    with grpc.insecure_channel(stack.grpc_addr) as ch:
        for version in ("v1", "v1alpha"):
            print(f"--- grpc.reflection.{version}, one stream, no token")
            reqs = [R(host="localhost", list_services="")]
            reqs += [R(file_by_filename=n) for n in sorted(protoset)]
            symbols = sorted(WANT_SERVICES) + [
                "deviceassignment.v1.DeviceAssignment.AssignDevice",
                "deviceassignment.v1.AssignDeviceRequest",
                "deviceassignment.v1.ClientType",
                "google.rpc.Status",
                "google.rpc.ErrorInfo",
            ]
            reqs += [R(file_containing_symbol=s) for s in symbols]
            reqs += [R(file_containing_symbol="no.such.Symbol"),
                     R(file_by_filename="no/such.proto"),
                     R(file_containing_extension=pb.ExtensionRequest(
                         containing_type="google.protobuf.MethodOptions",
                         extension_number=72295728)),
                     R(all_extension_numbers_of_type="google.protobuf.MethodOptions")]
            resps = list(stream(ch, pb, version)(iter(reqs), timeout=30))
            check(len(resps) == len(reqs),
                  f"{len(resps)} answers to {len(reqs)} requests on one stream")
            if len(resps) != len(reqs):
                continue
            it = iter(zip(reqs, resps))

            req, resp = next(it)
            names = sorted(s.name for s in resp.list_services_response.service)
            print("list_services:")
            for n in names:
                print("  " + n)
            check(set(names) == WANT_SERVICES, "list_services = the served services")
            check(resp.valid_host == "localhost" and resp.original_request == req,
                  "valid_host and original_request echoed")

            for name in sorted(protoset):
                req, resp = next(it)
                got = {fd.name: fd for fd in files_of(resp)}
                want = imports_closure(protoset, name)
                check(set(got) == want and all(got[n] == protoset[n] for n in got),
                      f"file_by_filename {name}: {len(got)} file(s), "
                      "equal to the protoset's")
            for sym in symbols:
                req, resp = next(it)
                got = {fd.name: fd for fd in files_of(resp)}
                owner = [n for n in got if defines(got[n], sym)]
                check(len(owner) == 1 and got[owner[0]] == protoset[owner[0]]
                      and set(got) == imports_closure(protoset, owner[0]),
                      f"file_containing_symbol {sym}: {owner}")
            for what in ("symbol", "file"):
                req, resp = next(it)
                check(resp.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0],
                      f"unknown {what}: error_response NOT_FOUND")
            req, resp = next(it)
            got = [fd.name for fd in files_of(resp)]
            check(got[:1] == ["google/api/annotations.proto"],
                  f"file_containing_extension google.api.http: {got[:1]}")
            req, resp = next(it)
            check(72295728 in resp.all_extension_numbers_response.extension_number,
                  "all_extension_numbers_of_type MethodOptions has google.api.http")

        # The annotations travel: AssignDevice carries its REST bindings.
        api = protoset["deviceassignment/v1/device_assignment.proto"]
        method = [m for m in api.service[0].method if m.name == "AssignDevice"][0]
        check(method.options.ByteSize() > 0,
              "AssignDevice has its google.api.http option in the protoset")


class Feed:
    """A request iterator fed by the test, for streams kept open."""
    def __init__(self):
        import queue
        self.q = queue.Queue()

    def put(self, item):
        self.q.put(item)

    def close(self):
        self.q.put(None)

    def __iter__(self):
        return self

    def __next__(self):
        item = self.q.get()
        if item is None:
            raise StopIteration
        return item


class OpenStream:
    def __init__(self, channel, feed, responses):
        self.channel, self.feed, self.responses = channel, feed, responses

    def close(self):
        self.feed.close()
        self.responses.cancel()
        self.channel.close()


def open_stream(stack, pb, version="v1"):
    """A stream that answered one request and stays open."""
    ch = grpc.insecure_channel(stack.grpc_addr)
    feed = Feed()
    responses = stream(ch, pb, version)(feed, timeout=60)
    feed.put(pb.ServerReflectionRequest(list_services=""))
    next(responses)
    return OpenStream(ch, feed, responses)


def hostile_checks(stack, pb):
    print("--- hostile input")
    with grpc.insecure_channel(stack.grpc_addr) as ch:
        raw = ch.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            list(raw(iter([b"\xff\xff\xff\xff"]), timeout=10))
            check(False, "garbage request answered")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT,
                  f"garbage request: {e.code().name}")
        R = pb.ServerReflectionRequest
        try:
            list(stream(ch, pb, "v1")(iter([
                R(file_containing_symbol="a." * 40000)]), timeout=10))
            check(False, "an 80 kB symbol answered")
        except grpc.RpcError as e:
            check(e.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                               grpc.StatusCode.RESOURCE_EXHAUSTED),
                  f"an 80 kB symbol: {e.code().name}")
        # Compressed requests are inflated by the server, bounded.
        got = list(stream(ch, pb, "v1")(iter([R(list_services="")]), timeout=10,
                                        compression=grpc.Compression.Gzip))
        check(len(got) == 1 and len(got[0].list_services_response.service) == 5,
              "a gzip-compressed request is answered")
        try:
            list(stream(ch, pb, "v1")(iter([R(host="a" * 4_000_000)]), timeout=30,
                                      compression=grpc.Compression.Gzip))
            check(False, "a gzip bomb (4 MB inflated) answered")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED,
                  f"a gzip bomb (4 MB inflated): {e.code().name} {e.details()}")
        empty = list(stream(ch, pb, "v1alpha")(iter([R()]), timeout=10))
        check(len(empty) == 1 and empty[0].error_response.error_code ==
              grpc.StatusCode.UNIMPLEMENTED.value[0],
              "a request with no kind: error_response UNIMPLEMENTED")
    # Streams are bounded: 64 open; a 65th takes the place of the one that
    # waited longest, so streams held open and idle keep nobody out.
    held = []
    try:
        for _ in range(64):
            held.append(open_stream(stack, pb))
        check(True, "64 reflection streams open at once")
        for i in range(3):
            held.append(open_stream(stack, pb))
            check(True, f"stream {65 + i} served with 64 open")
            try:
                next(held[i].responses)
                check(False, f"stream {i + 1}, idle longest, still open")
            except grpc.RpcError as e:
                check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and
                      "waited longest" in (e.details() or ""),
                      f"stream {i + 1}, idle longest, ended: "
                      f"{e.code().name} {e.details()}")
        # The others are still served.
        for s in (held[3], held[63], held[66]):
            s.feed.put(pb.ServerReflectionRequest(list_services=""))
            got = next(s.responses)
            check(len(got.list_services_response.service) == 5,
                  "a stream not ended still answers")
    finally:
        for s in held:
            s.close()
    # Once they are closed, streams are served again.
    import time
    for _ in range(100):
        try:
            open_stream(stack, pb).close()
            check(True, "streams served again once the others closed")
            break
        except grpc.RpcError:
            time.sleep(0.05)
    else:
        check(False, "streams still refused after the others closed")


def defines(fd, symbol):
    pkg = fd.package + "." if fd.package else ""
    names = set()
    for s in fd.service:
        names.add(pkg + s.name)
        names.update(pkg + s.name + "." + m.name for m in s.method)

    def walk(prefix, msgs):
        for m in msgs:
            names.add(prefix + m.name)
            walk(prefix + m.name + ".", m.nested_type)
            names.update(prefix + m.name + "." + e.name for e in m.enum_type)
    walk(pkg, fd.message_type)
    names.update(pkg + e.name for e in fd.enum_type)
    return symbol in names


if __name__ == "__main__":
    sys.exit(main())
