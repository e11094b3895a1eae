#!/usr/bin/python3
"""README.md, run as a newcomer would, and checked where it states facts.

The convention (also written at the top of README.md):

- Blocks fenced ```sh are run verbatim, in README order, in one bash shell
  against a fresh `make run` (scripts/run.sh on free ports with a private
  state folder). The only substitutions: 127.0.0.1:8080 and 127.0.0.1:50051
  become the free ports, and `<the token make run printed>` the token it
  printed. The shell starts in a folder whose var/ is the stack's, and
  whose build/, examples/ and proto/ are this build and checkout.
- What a command must do is stated by a comment at the end of its (last)
  line, `# -> SPEC`, where SPEC is, in this order and each optional:
      NNN             the last HTTP status line in its output (curl -i)
      exit N          its exit status (without it, 0 is required)
      contains TEXT   TEXT (to the end of the line) appears in its output
  e.g. `# -> 402 contains "data":{"clientType":"mobile"}`. Every command
  that runs curl must state something. Comment-only lines are left alone.
- Blocks fenced ```console or ```text (or indented) are shown only: what
  needs a setup this test cannot give (compose, TLS, a metrics profile,
  PostgreSQL, tools that are not Debian packages).

New sections are picked up as they are: whatever ```sh blocks exist run, in
order. The test also checks the error table (HTTP, gRPC status, reason)
against common/status.h, and the "Where things live" list against the
repository's folders, tests/ and docs/.

  test_readme.py --readme README.md --status-h common/status.h
                 --root SRC --build-dir BUILD
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402

TOKEN_PLACEHOLDER = "<the token make run printed>"
SPEC = re.compile(r"#\s*->\s*(?P<spec>.*)$")
STATUS_LINE = re.compile(r"^HTTP/[0-9.]+ (\d{3})\b", re.M)

problems = []


def problem(text):
    problems.append(text)
    print(f"FAIL: {text}")


# ---- README parsing ----

def fenced_blocks(text):
    """[(info string, first line number, [lines])] of ``` fenced blocks."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```\s*(\S*)", lines[i])
        if m and lines[i].strip().startswith("```"):
            info, start, body = m.group(2), i + 1, []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append((info, start + 1, body))
        i += 1
    return blocks


def commands_of(block_lines, first_line):
    """Logical commands (continuation lines joined) with their line number.
    Comment-only and blank lines are kept as commands of their own that
    state nothing."""
    cmds = []
    i = 0
    while i < len(block_lines):
        start = i
        parts = [block_lines[i]]
        while parts[-1].rstrip().endswith("\\") and i + 1 < len(block_lines):
            i += 1
            parts.append(block_lines[i])
        i += 1
        cmds.append((first_line + start, "\n".join(parts)))
    return cmds


def parse_spec(line_no, spec):
    """'201 exit 1 contains X' -> dict; None when it does not parse."""
    out = {"status": None, "exit": 0, "contains": None}
    rest = spec.strip()
    m = re.match(r"^(\d{3})\b\s*", rest)
    if m:
        out["status"] = m.group(1)
        rest = rest[m.end():]
    m = re.match(r"^exit\s+(\d+)\b\s*", rest)
    if m:
        out["exit"] = int(m.group(1))
        rest = rest[m.end():]
    m = re.match(r"^contains\s+(.+)$", rest)
    if m:
        out["contains"] = m.group(1).rstrip()
        rest = ""
    if rest.strip() or (out["status"] is None and out["contains"] is None
                        and "exit" not in spec):
        problem(f"README line {line_no}: cannot read '# -> {spec}' "
                f"(NNN, exit N, contains TEXT)")
        return None
    return out


def last_line_spec(cmd):
    last = cmd.splitlines()[-1]
    # Only a comment outside quotes counts; README commands keep their
    # arrows after the closing quote, so the last '#' with '->' is it.
    m = SPEC.search(last)
    if not m:
        return None
    before = last[:m.start()]
    if before.count("'") % 2 or before.count('"') % 2:
        return None
    return m.group("spec")


# ---- the checks that read files ----

def check_error_table(readme, status_h):
    with open(status_h, encoding="utf-8") as f:
        src = f.read().replace("\\\n", " ")
    rows = set()
    for m in re.finditer(r"X\(\s*(\w+)\s*,\s*DAS_GRPC_(\w+)\s*,\s*"
                         r"\"(\w*)\"\s*,\s*(\d{3})", src):
        name, grpc, reason, http = m.groups()
        if grpc == "OK":  # the successes (201, 200), not errors
            continue
        rows.add((http, grpc, reason))
    if len(rows) < 10:
        problem(f"read only {len(rows)} rows from {status_h}")
    sec = readme.split("### Errors", 1)
    if len(sec) != 2:
        problem("README has no '### Errors' section")
        return
    table = set()
    for line in sec[1].splitlines():
        if line.startswith("## "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and re.fullmatch(r"\d{3}", cells[0]):
            table.add((cells[0], cells[1], cells[2].strip("`")))
    for r in sorted(rows - table):
        problem(f"error table lacks the status.h row HTTP {r[0]} {r[1]} "
                f"reason {r[2]}")
    for r in sorted(table - rows):
        problem(f"error table row HTTP {r[0]} {r[1]} reason {r[2]!r} is "
                f"not in status.h")
    print(f"error table: {len(table)} rows, {len(rows)} in status.h")


def check_layout(readme, root):
    m = re.search(r"^## Where things live\s*$", readme, re.M)
    if not m:
        problem("README has no '## Where things live' section")
        return
    blocks = fenced_blocks(readme[m.end():])
    if not blocks:
        problem("'Where things live' has no fenced list")
        return
    listing = "\n".join(blocks[0][2])
    names = set(re.findall(r"[\w.-]+(?:/[\w.-]+)*/?", listing))
    flat = set()
    for n in names:
        parts = n.rstrip("/").split("/")
        for i in range(len(parts)):
            flat.add("/".join(parts[:i + 1]))
        flat.add(parts[-1])
    ignored = re.compile(r"^(\..*|build|build-.*|var|__pycache__|"
                         r"compile_commands\.json)$")
    missing = []
    for entry in sorted(os.listdir(root)):
        if ignored.match(entry) or entry in ("README.md", "CMakeLists.txt"):
            continue
        if entry not in flat:
            missing.append(entry)
    for sub in ("tests", "docs"):
        for entry in sorted(os.listdir(os.path.join(root, sub))):
            path = os.path.join(root, sub, entry)
            if ignored.match(entry) or entry == "CMakeLists.txt":
                continue
            if sub == "tests" and not os.path.isdir(path):
                continue
            if entry not in flat and f"{sub}/{entry}" not in flat:
                missing.append(f"{sub}/{entry}")
    for x in missing:
        problem(f"'Where things live' does not list {x}")
    print(f"layout: {len(missing)} missing")


# ---- running the sh blocks ----

def run_blocks(args, readme):
    blocks = [b for b in fenced_blocks(readme) if b[0] == "sh"]
    if not blocks:
        problem("README has no ```sh block to run")
        return
    s = stack.Stack(args.root, args.build_dir)
    try:
        s.start()
        if not s.token:
            problem("make run printed no `export DAS_TOKEN='...'` line")
            return
        cwd = os.path.join(s.tmp, "cwd")
        os.mkdir(cwd)
        os.symlink(s.var, os.path.join(cwd, "var"))
        os.symlink(args.build_dir, os.path.join(cwd, "build"))
        for d in ("examples", "proto"):
            os.symlink(os.path.join(args.root, d), os.path.join(cwd, d))
        outdir = os.path.join(s.tmp, "out")
        os.mkdir(outdir)

        subst = [("127.0.0.1:8080", f"127.0.0.1:{s.http}"),
                 ("127.0.0.1:50051", f"127.0.0.1:{s.grpc}"),
                 (TOKEN_PLACEHOLDER, s.token)]
        script = ["cd " + shlex_quote(cwd)]
        checks = []
        n = 0
        for _, line_no, body in blocks:
            for cmd_line, cmd in commands_of(body, line_no):
                stripped = cmd.strip()
                if not stripped or stripped.startswith("#"):
                    continue
                for a, b in subst:
                    cmd = cmd.replace(a, b)
                spec_text = last_line_spec(cmd)
                spec = parse_spec(cmd_line, spec_text) if spec_text else \
                    {"status": None, "exit": 0, "contains": None}
                if spec is None:
                    continue
                if spec_text is None and re.search(r"\bcurl\b", cmd):
                    problem(f"README line {cmd_line}: a curl without "
                            f"'# -> ...' (what does it answer?)")
                n += 1
                out = os.path.join(outdir, f"{n}.out")
                script.append(f"{{\n{cmd}\n}} >{shlex_quote(out)} 2>&1 "
                              f"</dev/null\necho $? >{shlex_quote(out)}.rc")
                checks.append((cmd_line, cmd, spec, out))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("DAS_")}
        r = subprocess.run(["bash", "-c", "\n".join(script)], env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=300)
        if r.stdout.strip():
            print(r.stdout)
        for cmd_line, cmd, spec, out in checks:
            check_one(cmd_line, cmd, spec, out)
        print(f"ran {len(checks)} commands from {len(blocks)} sh blocks")
        rc = s.ctrl_c()
        if rc != 0:
            problem(f"make run exited {rc} after the README ran:\n"
                    f"{s.output()}")
    finally:
        s.close()


def shlex_quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def check_one(line_no, cmd, spec, out):
    try:
        with open(out, encoding="utf-8", errors="replace") as f:
            text = f.read()
        with open(out + ".rc") as f:
            rc = int(f.read().strip())
    except (OSError, ValueError):
        problem(f"README line {line_no}: did not run (an earlier command "
                f"ended the shell?)\n  {cmd}")
        return
    what = []
    if rc != spec["exit"]:
        what.append(f"exit {rc}, the README says {spec['exit']}")
    if spec["status"] is not None:
        got = STATUS_LINE.findall(text)
        if not got:
            what.append(f"no HTTP status in the output (the README says "
                        f"{spec['status']}; use curl -i)")
        elif got[-1] != spec["status"]:
            what.append(f"HTTP {got[-1]}, the README says {spec['status']}")
    if spec["contains"] is not None and spec["contains"] not in text:
        what.append(f"output lacks {spec['contains']!r}")
    shown = cmd.replace("\n", "\n    ")
    if what:
        problem(f"README line {line_no}: {'; '.join(what)}\n    {shown}\n"
                f"  output:\n    " + text.strip().replace("\n", "\n    "))
    else:
        print(f"ok  line {line_no}: {cmd.splitlines()[0][:90]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--readme", required=True)
    ap.add_argument("--status-h", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    with open(args.readme, encoding="utf-8") as f:
        readme = f.read()
    # HTML comments are not part of the page (line numbers are kept).
    readme = re.sub(r"<!--.*?-->", lambda m: "\n" * m.group().count("\n"),
                    readme, flags=re.S)
    check_error_table(readme, args.status_h)
    check_layout(readme, args.root)
    run_blocks(args, readme)
    if problems:
        print(f"README: {len(problems)} problem(s)")
        sys.exit(1)
    print("README: every sh block ran as it says")


if __name__ == "__main__":
    main()
