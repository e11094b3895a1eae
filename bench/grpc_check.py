#!/usr/bin/python3
"""One gRPC call with a real client (Debian's python3-grpcio), so that the
rates h2load reports (it counts HTTP 200s, not grpc-status) can be trusted.

    grpc_check.py ADDR METHOD_PATH FRAME_FILE [TOKEN]

FRAME_FILE is the h2load body: one gRPC frame (0, 4-byte length, message).
Prints "OK" or the status code and message; exit 0 only on OK.
"""
import struct
import sys

import grpc


def main():
    addr, path, frame_file = sys.argv[1:4]
    token = sys.argv[4] if len(sys.argv) > 4 else None
    frame = open(frame_file, "rb").read()
    if len(frame) < 5 or frame[0] != 0:
        print("bad frame file")
        return 2
    (n,) = struct.unpack(">I", frame[1:5])
    msg = frame[5:5 + n]
    md = [("authorization", "Bearer " + token)] if token else []
    with grpc.insecure_channel(addr) as ch:
        call = ch.unary_unary(path, request_serializer=None,
                              response_deserializer=None)
        try:
            call(msg, metadata=md, timeout=10)
        except grpc.RpcError as e:
            print("%s %s" % (e.code().name, e.details()))
            return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
