#!/usr/bin/python3
"""`make run` as a newcomer uses it.

  test_run.py ctrl-c  --root SRC --build-dir BUILD [--runs 20] [--make-runs 2]
  test_run.py ports   --root SRC --build-dir BUILD
  test_run.py secrets --root SRC --build-dir BUILD

ctrl-c: SIGINT to the whole process group (what a terminal's Ctrl-C does),
--runs times on scripts/run.sh and --make-runs times on `make run` itself:
every time exactly one clean message, status 0 (for make: no error line;
GNU make re-raises the SIGINT it got on itself once its recipe ended, so
its own status is "killed by SIGINT"), and nothing left running, ports
free again.
ports: both ports busy -> `make run` names both and stops before building.
secrets: a var/ left 0755 with a 0644 secret becomes 0700 / 0600.
"""

import argparse
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def after_banner(text):
    return text.split(stack.BANNER_END, 1)[1] if stack.BANNER_END in text \
        else text


def check_stopped(s, rc, via_make):
    out = s.output()
    tail = after_banner(out) if stack.BANNER_END in out else \
        "\n".join(ln for ln in out.splitlines()
                  if "generated a new HS256 secret" not in ln)
    msgs = [ln for ln in tail.splitlines() if "make run:" in ln
            or "make:" in ln or "make[" in ln]
    # A stop slower than 5 s names the program it waits for: allowed (a
    # loaded machine), shown, and the 60 s bound of ctrl_c still holds.
    slow = [ln for ln in msgs if ln.startswith(stack.SLOW_STOP)]
    if slow:
        print(f"note: slow stop: {slow!r}")
    msgs = [ln for ln in msgs if ln not in slow]
    if msgs != [stack.STOPPED]:
        fail(f"expected exactly the line {stack.STOPPED!r} after Ctrl-C, "
             f"got {msgs!r}; output:\n{out}")
    if via_make:
        # 0, or killed by the SIGINT make got itself (-2); an "Error" line
        # (the script's status was not 0) is caught above.
        if rc not in (0, -2):
            fail(f"make run ended with {rc}; output:\n{out}")
    elif rc != 0:
        fail(f"scripts/run.sh exited {rc} after Ctrl-C; output:\n{out}")
    # The script waited for both programs: nothing may be left, at once.
    left = stack.processes_mentioning(s.var)
    if left:
        fail(f"still running after Ctrl-C: {left}")
    for port in (s.grpc, s.http):
        if not stack.port_is_free(port):
            fail(f"port {port} still answers after Ctrl-C")


def cmd_ctrl_c(args):
    shared = tempfile.mkdtemp(prefix="das-ctrlc-")
    var = os.path.join(shared, "var")
    try:
        plan = [False] * args.runs + [True] * args.make_runs
        times = []
        for i, via_make in enumerate(plan):
            argv = None
            if via_make:
                argv = ["make", "--no-print-directory", "-C", args.root,
                        "run", f"BUILD_DIR={args.build_dir}"]
            s = stack.Stack(args.root, args.build_dir, argv=argv, var=var)
            try:
                s.start(timeout=180 if via_make else 90)
                t0 = time.monotonic()
                rc = s.ctrl_c()
                times.append(time.monotonic() - t0)
                check_stopped(s, rc, via_make)
            finally:
                s.close()
        # Ctrl-C while the programs are still starting: the same outcome.
        for i in range(args.startup_runs):
            s = stack.Stack(args.root, args.build_dir)
            try:
                s.start(wait_ready=False)
                log = os.path.join(s.var, "server.log")
                deadline = time.monotonic() + 60
                while not os.path.exists(log):
                    if time.monotonic() > deadline:
                        fail(f"no server log after 60 s:\n{s.output()}")
                    time.sleep(0.01)
                time.sleep(0.05 * i)
                check_stopped(s, s.ctrl_c(), False)
            finally:
                s.close()
        print(f"ok: {args.runs} x scripts/run.sh, {args.make_runs} x make "
              f"run and {args.startup_runs} x during start-up stopped by SIGINT to the process group, one message each, "
              f"nothing left; stop took {min(times):.2f}-{max(times):.2f} s")
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def cmd_ports(args):
    socks = []
    tmp = tempfile.mkdtemp(prefix="das-ports-")
    try:
        for _ in range(2):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            socks.append(s)
        grpc, http = (f"127.0.0.1:{s.getsockname()[1]}" for s in socks)
        never = os.path.join(tmp, "build-never")
        r = subprocess.run(["make", "--no-print-directory", "-C", args.root,
                            "run", f"BUILD_DIR={never}", f"RUN_GRPC={grpc}",
                            f"RUN_HTTP={http}"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=120)
        if r.returncode == 0:
            fail(f"make run succeeded with both ports busy:\n{r.stdout}")
        for a in (grpc, http):
            if not re.search(rf"make run: {re.escape(a)} is busy", r.stdout):
                fail(f"busy {a} not named:\n{r.stdout}")
        if os.path.exists(never) or "cmake" in r.stdout or "deps:" in r.stdout:
            fail(f"make run built before checking the ports:\n{r.stdout}")
        # One busy port: only that one is named.
        socks[0].close()
        r = subprocess.run([os.path.join(args.root, "scripts", "run.sh"),
                            "--check-ports"], env=dict(
                                os.environ, RUN_GRPC=grpc, RUN_HTTP=http),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=60)
        if r.returncode == 0 or grpc in r.stdout or http not in r.stdout:
            fail(f"one busy port ({http}), got {r.returncode}:\n{r.stdout}")
        print(f"ok: both busy ports named before any build:\n{r.stdout}")
    finally:
        for s in socks:
            s.close()
        shutil.rmtree(tmp, ignore_errors=True)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def cmd_secrets(args):
    shared = tempfile.mkdtemp(prefix="das-secrets-")
    var = os.path.join(shared, "var")
    try:
        os.mkdir(var, 0o755)
        os.chmod(var, 0o755)
        secret = os.path.join(var, "jwt-secret")
        with open(secret, "w") as f:
            f.write("00" * 32 + "\n")
        os.chmod(secret, 0o644)
        s = stack.Stack(args.root, args.build_dir, var=var)
        try:
            s.start()
            got = (mode(var), mode(secret))
            if got != (0o700, 0o600):
                fail(f"var/ {got[0]:o}, jwt-secret {got[1]:o}; "
                     f"expected 700 and 600")
            rc = s.ctrl_c()
            check_stopped(s, rc, False)
        finally:
            s.close()
        # A fresh folder: the same modes.
        shutil.rmtree(var)
        s = stack.Stack(args.root, args.build_dir, var=var)
        try:
            s.start()
            got = (mode(var), mode(secret))
            if got != (0o700, 0o600):
                fail(f"fresh: var/ {got[0]:o}, jwt-secret {got[1]:o}")
            check_stopped(s, s.ctrl_c(), False)
        finally:
            s.close()
        print("ok: var/ 0700 and jwt-secret 0600, existing or new")
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["ctrl-c", "ports", "secrets"])
    ap.add_argument("--root", required=True)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--make-runs", type=int, default=2)
    ap.add_argument("--startup-runs", type=int, default=3)
    args = ap.parse_args()
    {"ctrl-c": cmd_ctrl_c, "ports": cmd_ports,
     "secrets": cmd_secrets}[args.mode](args)


if __name__ == "__main__":
    main()
