#!/usr/bin/python3
"""examples/python against the real server.

Generates the stubs with examples/python/generate.sh (python3-grpc-tools),
imports examples/directory.json (customer with 2 included seats) and runs
examples/python/assign.py: two users fill the seats, the third is refused
with CHARGES_NOT_ACCEPTED read from the ErrorInfo (exit 3, nothing
assigned), then accepted with --accept-charges (charged), each run listing.

usage: check_python_example.py --server EXE --cli EXE --root DIR
"""
import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from das_stack import Stack  # noqa: E402

TENANT = "6fa459ea-ee8a-4ca4-894e-db77e160355e"
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def main():
    ap = argparse.ArgumentParser()
    for a in ("server", "cli", "root"):
        ap.add_argument("--" + a, required=True)
    a = ap.parse_args()
    example = os.path.join(a.root, "examples", "python")
    with tempfile.TemporaryDirectory(prefix="das-pystubs-") as stubs:
        subprocess.run([os.path.join(example, "generate.sh"), stubs], check=True)
        directory = os.path.join(a.root, "examples", "directory.json")
        with Stack(a.server, a.cli, directory=directory) as stack:
            env = {k: v for k, v in os.environ.items() if not k.startswith("DAS_")}
            env["DAS_TOKEN"] = stack.token(scope="devices:assign",
                                           tenant=TENANT, sub="python-example")
            env["DAS_PY_STUBS"] = stubs

            def run(user, device, *extra):
                r = subprocess.run(
                    ["/usr/bin/python3", os.path.join(example, "assign.py"),
                     "--server", stack.grpc_addr, "--tenant", TENANT,
                     "--user", user, "--device", device,
                     "--client-type", "desktop", *extra],
                    capture_output=True, text=True, env=env, timeout=60)
                print(f"$ assign.py --user {user} --device {device} {' '.join(extra)}"
                      f"  -> exit {r.returncode}")
                sys.stdout.write("  " + r.stdout.replace("\n", "\n  ").rstrip() + "\n")
                sys.stderr.write(r.stderr)
                return r

            r = run("alice", "alice-desk-01")
            check(r.returncode == 0 and "alice-desk-01: CLIENT_TYPE_DESKTOP" in r.stdout,
                  "alice assigned and listed (seat 1 of 2)")
            r = run("bob", "bob-desk-01")
            check(r.returncode == 0 and "charged: False" in r.stdout,
                  "bob assigned, not charged (seat 2 of 2)")
            r = run("dave", "dave-desk-01")
            check(r.returncode == 3 and "CHARGES_NOT_ACCEPTED" in r.stdout
                  and "additional charges apply" in r.stdout,
                  "dave refused: CHARGES_NOT_ACCEPTED from the ErrorInfo, exit 3")
            r = run("dave", "dave-desk-01", "--accept-charges")
            check(r.returncode == 0 and "charged: True" in r.stdout
                  and "dave-desk-01: CLIENT_TYPE_DESKTOP" in r.stdout,
                  "dave assigned with --accept-charges, charged, listed")
            r = run("carol", "carol-desk-01")
            check(r.returncode == 1 and "MISSING_ROLES" in r.stdout,
                  "carol: another error (MISSING_ROLES) is exit 1")
        check(stack.exit_codes.get("device-assignment-server") == 0,
              f"server exits 0 on SIGTERM: {stack.exit_codes}")
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("python example ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
