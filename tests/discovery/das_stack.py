"""The real server (and gateway) on loopback for the Python discovery tests.

Stack(...) starts device-assignment-server on a free port with a fresh
SQLite store and HS256 secret in a private temporary directory, optionally
imports examples/directory.json and starts the gateway in front. Every child
gets PR_SET_PDEATHSIG(SIGKILL), and leaving the `with` block (or a signal)
stops them (SIGTERM; exit_codes then holds each exit status, which a
sanitizer report makes non-zero) and removes the directory, so nothing
outlives a failed test.
"""
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PR_SET_PDEATHSIG = 1
START_TIMEOUT_S = 30
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("DAS_")}


class Stack:
    def __init__(self, server, cli, gateway=None, directory=None,
                 server_args=(), gateway_args=()):
        self.server_bin, self.cli_bin, self.gateway_bin = server, cli, gateway
        self.directory = directory
        self.server_args, self.gateway_args = list(server_args), list(gateway_args)
        self.procs = []  # (name, Popen)
        self.exit_codes = {}  # name -> exit status once stopped (SIGTERM)
        self.tmp = None
        self.grpc_addr = self.http_addr = None

    # -- lifetime --
    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix="das-discovery-")
        signal.signal(signal.SIGTERM, self._on_signal)
        try:
            self.secret = os.path.join(self.tmp, "jwt-secret")
            with open(self.secret, "w") as f:
                f.write(os.urandom(32).hex())
            self.grpc_addr = self._start(
                "device-assignment-server",
                [self.server_bin, "--listen", "127.0.0.1:0", "--store",
                 "sqlite:" + os.path.join(self.tmp, "das.db"),
                 "--jwt-hs256-secret-file", self.secret, *self.server_args])
            if self.directory:
                admin = self.token(scope="directory:admin")
                self.cli("--token", admin, "import", self.directory)
            if self.gateway_bin:
                self.http_addr = self._start(
                    "device-assignment-gateway",
                    [self.gateway_bin, "--listen", "127.0.0.1:0",
                     "--upstream", self.grpc_addr, *self.gateway_args])
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for name, p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            self.exit_codes[name] = p.returncode
        self.procs = []
        failed_exit = any(c != 0 for c in self.exit_codes.values())
        if ((exc and exc[0] is not None) or failed_exit) and self.tmp:
            for name in os.listdir(self.tmp):
                if name.endswith(".log"):
                    with open(os.path.join(self.tmp, name)) as f:
                        sys.stderr.write(f"--- {name}\n{f.read()[-4000:]}")
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        return False

    def _on_signal(self, signum, frame):
        self.__exit__(None, None, None)
        sys.exit(128 + signum)

    def _start(self, name, argv):
        out = os.path.join(self.tmp, name + ".out")
        log = os.path.join(self.tmp, name + ".log")
        with open(out, "w") as o, open(log, "w") as e:
            p = subprocess.Popen(argv, stdout=o, stderr=e, env=_clean_env(),
                                 preexec_fn=_die_with_parent)
        self.procs.append((name, p))
        deadline = time.monotonic() + START_TIMEOUT_S
        pat = re.compile(re.escape(name) + r" listening on (\S+)")
        while time.monotonic() < deadline:
            with open(out) as f:
                m = pat.search(f.read())
            if m:
                return m.group(1)
            if p.poll() is not None:
                with open(log) as f:
                    raise RuntimeError(f"{name} exited {p.returncode}: {f.read()}")
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not report listening in {START_TIMEOUT_S} s")

    # -- helpers --
    def cli(self, *args):
        r = subprocess.run([self.cli_bin, "--server", self.grpc_addr, *args],
                           capture_output=True, text=True, env=_clean_env(),
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"device-assignment {args[0:3]}: {r.stderr}")
        return r.stdout.strip()

    def token(self, scope="devices:assign", tenant="*", sub="discovery-test"):
        r = subprocess.run([self.cli_bin, "token", "--secret-file", self.secret,
                            "--sub", sub, "--tenant", tenant, "--scope", scope,
                            "--ttl", "600"], capture_output=True, text=True,
                           env=_clean_env(), check=True, timeout=60)
        return r.stdout.strip()
