"""Starting and stopping `make run` (scripts/run.sh) for the newcomer tests.

Only Debian's python3 is needed. Every test gets free loopback ports, a
private state folder (RUN_VAR) and its own session, so a Ctrl-C can be sent
to the whole process group as a terminal does; nothing it started outlives
it, even when it fails.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

BANNER_END = "Logs follow; Ctrl-C stops both programs."
STOPPED = "make run: stopped the gateway and the server"
SLOW_STOP = "make run: waiting for the "


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_mentioning(text):
    """PIDs whose command line contains text (our private folder's path)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmd and state != "Z":
            found.append((int(pid), cmd.strip()))
    return found


def port_is_free(port):
    with socket.socket() as s:
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return True
    return False


class Stack:
    """One `make run` (argv) in its own session with private ports/folder."""

    def __init__(self, root, build_dir, argv=None, var=None):
        self.root = root
        self.build_dir = build_dir
        self.tmp = tempfile.mkdtemp(prefix="das-newcomer-")
        self.var = var or os.path.join(self.tmp, "var")
        self.grpc = free_port()
        self.http = free_port()
        self.argv = argv or [os.path.join(root, "scripts", "run.sh")]
        self.proc = None
        self.out_path = os.path.join(self.tmp, "run.out")
        self.token = None

    def env(self):
        env = dict(os.environ)
        env.update(BUILD_DIR=self.build_dir,
                   RUN_GRPC=f"127.0.0.1:{self.grpc}",
                   RUN_HTTP=f"127.0.0.1:{self.http}",
                   RUN_VAR=self.var)
        return env

    def start(self, timeout=90, wait_ready=True):
        out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(self.argv, cwd=self.root, env=self.env(),
                                     stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()
        if not wait_ready:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            if BANNER_END in text:
                for line in text.splitlines():
                    line = line.strip()
                    if line.startswith("export DAS_TOKEN='"):
                        self.token = line[len("export DAS_TOKEN='"):-1]
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"make run exited {self.proc.returncode}"
                                     f" before it was ready:\n{text}")
            time.sleep(0.1)
        raise AssertionError(f"make run not ready within {timeout} s:\n"
                             f"{self.output()}")

    def output(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode(errors="replace")

    def ctrl_c(self, timeout=60):
        """SIGINT to the process group, as a terminal's Ctrl-C; returns the
        exit status (negative: killed by that signal)."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"make run still running {timeout} s after "
                                 f"Ctrl-C:\n{self.output()}\n"
                                 f"processes: {self.describe()}")

    def describe(self):
        """The script's process group and what each member is blocked in."""
        rows = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                if os.getpgid(int(pid)) != self.proc.pid and \
                        self.var not in open(f"/proc/{pid}/cmdline").read():
                    continue
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(
                        errors="replace").strip()
                with open(f"/proc/{pid}/wchan") as f:
                    wchan = f.read().strip()
            except OSError:
                continue
            rows.append(f"{pid} [{wchan}] {cmd[:120]}")
        return "\n  " + "\n  ".join(rows)

    def leftovers(self):
        """Our programs still running: the server names the private folder
        in its flags; the gateway names only its addresses."""
        found = processes_mentioning(self.tmp)
        for text in (f"--listen 127.0.0.1:{self.http} ",
                     f"--listen 127.0.0.1:{self.grpc} "):
            found += [p for p in processes_mentioning(text) if p not in found]
        return found

    def close(self):
        """Whatever happened: nothing of ours keeps running, the folder goes."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for pid, _ in self.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)
