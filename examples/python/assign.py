#!/usr/bin/python3
"""Assigns a PBX device as a user's softphone over gRPC, then lists the
user's assignments. A new paid seat is refused with FAILED_PRECONDITION and
reason CHARGES_NOT_ACCEPTED in the google.rpc.ErrorInfo of the status
details (REST: 402); with --accept-charges the call is repeated with
accept_charges set.

  examples/python/generate.sh            # stubs into examples/python/gen
  DAS_TOKEN=... examples/python/assign.py --tenant T --user U --device D \
      --client-type desktop [--accept-charges] [--server 127.0.0.1:50051]

Exit status: 0 assigned, 3 charges not accepted, 1 any other error.
Uses Debian's python3-grpcio and python3-protobuf (/usr/bin/python3).
"""
import argparse
import os
import sys

import grpc

sys.path.insert(0, os.environ.get(
    "DAS_PY_STUBS", os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen")))
from deviceassignment.v1 import device_assignment_pb2 as pb  # noqa: E402
from deviceassignment.v1 import device_assignment_pb2_grpc as pb_grpc  # noqa: E402
from google.rpc import status_pb2  # noqa: E402

DOMAIN = "deviceassignment.v1"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
CLIENT_TYPES = {"desktop": pb.CLIENT_TYPE_DESKTOP, "mobile": pb.CLIENT_TYPE_MOBILE,
                "webrtc": pb.CLIENT_TYPE_WEBRTC, "crm": pb.CLIENT_TYPE_CRM}


def error_reason(err):
    """The ErrorInfo reason of our domain in a failed call, or None."""
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for any_ in status.details:
            if any_.type_url == ERROR_INFO_TYPE:
                info = status_pb2.ErrorInfo.FromString(any_.value)
                if info.domain == DOMAIN:
                    return info.reason
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="127.0.0.1:50051")
    ap.add_argument("--token", default=os.environ.get("DAS_TOKEN"))
    ap.add_argument("--tenant", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--device", required=True)
    ap.add_argument("--client-type", choices=sorted(CLIENT_TYPES), required=True)
    ap.add_argument("--accept-charges", action="store_true",
                    help="on CHARGES_NOT_ACCEPTED, repeat with accept_charges")
    a = ap.parse_args()
    if not a.token:
        sys.exit("no token: pass --token or set DAS_TOKEN")
    md = [("authorization", "Bearer " + a.token)]

    with grpc.insecure_channel(a.server) as channel:
        stub = pb_grpc.DeviceAssignmentStub(channel)
        req = pb.AssignDeviceRequest(customer_tenant_id=a.tenant, user_id=a.user,
                                     device_id=a.device,
                                     client_type=CLIENT_TYPES[a.client_type])
        try:
            resp = stub.AssignDevice(req, metadata=md, timeout=10)
        except grpc.RpcError as e:
            reason = error_reason(e)
            if reason != "CHARGES_NOT_ACCEPTED":
                print(f"assign failed: {e.code().name} {reason}: {e.details()}")
                return 1
            print(f"assign refused: {e.details()} ({reason}): a new paid seat")
            if not a.accept_charges:
                return 3
            print("accepting the charge and assigning again")
            req.accept_charges = True
            resp = stub.AssignDevice(req, metadata=md, timeout=10)
        previous = pb.ClientType.Name(resp.previous_client_type)
        print(f"assigned {a.device} to {a.user} as {a.client_type} at "
              f"{resp.timestamp.ToJsonString()} (previous: {previous}, "
              f"charged: {resp.charged})")

        lst = stub.ListUserDevices(pb.ListUserDevicesRequest(
            customer_tenant_id=a.tenant, user_id=a.user), metadata=md, timeout=10)
        print(f"{a.user} has {len(lst.devices)} softphone(s):")
        for d in lst.devices:
            print(f"  {d.device_id}: {pb.ClientType.Name(d.client_type)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
