#!/usr/bin/python3
"""Checks the deployment files against the real programs.

No Docker engine runs on our machines, so nothing would notice a compose
file that passes a flag a program does not have, or a Dockerfile whose
runtime stage lacks a shared library. This script reads them and asks the
built programs (their --help, their ldd) and dpkg instead.

  check_config.py help-version --version V [--readme README.md]
                               [--expect NAME...] --program NAME=PATH...
  check_config.py compose      --compose FILE --program NAME=PATH...
  check_config.py compose-selftest --compose FILE --program NAME=PATH...
  check_config.py dockerfile   --dockerfile FILE --packages FILE
                               --compose FILE --program NAME=PATH...

Every check prints one line per problem and exits 1 when there is any.
Only Debian's python3 and python3-yaml are needed (deps/debian-packages.txt).
"""

import argparse
import copy
import os
import re
import shlex
import subprocess
import sys

try:
    import yaml
except ImportError:
    sys.exit("check_config: python3-yaml is missing (run 'make deps')")

# The shape common/config.c prints for each flag:
#   "  --listen ADDR    [env DAS_LISTEN] [default: 127.0.0.1:50051]  help"
FLAG_LINE = re.compile(
    r"^\s+--(?P<name>[a-z0-9][a-z0-9-]*)(?: (?P<metavar>\S+))?\s+"
    r"\[env (?P<env>DAS_[A-Z0-9_]+)\] \[default: (?P<default>[^\]]*)\]"
    r"(?P<rep> \[repeatable\])?(?:\s+(?P<help>.*))?$")
ENV_REF = re.compile(r"\bDAS_[A-Z0-9_]+\b")
SANITIZER_PACKAGES = re.compile(r"^lib(asan|ubsan|lsan|tsan)\d*$")


class Problems:
    def __init__(self):
        self.lines = []

    def add(self, text):
        self.lines.append(text)

    def finish(self, what):
        for line in self.lines:
            print(f"FAIL {what}: {line}")
        if self.lines:
            print(f"{what}: {len(self.lines)} problem(s)")
            return 1
        print(f"{what}: ok")
        return 0


def parse_programs(items):
    programs = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            sys.exit(f"check_config: --program wants NAME=PATH, got {item!r}")
        programs[name] = path
    return programs


def run(argv, timeout=20):
    return subprocess.run(argv, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


class Flags:
    """The flags one program (or one CLI subcommand) documents in --help."""

    def __init__(self, help_text):
        self.by_name = {}
        self.envs = set()
        for line in help_text.splitlines():
            m = FLAG_LINE.match(line)
            if m:
                self.by_name[m["name"]] = m
                self.envs.add(m["env"])

    def takes_value(self, name):
        return self.by_name[name]["metavar"] is not None


_flags_cache = {}


def flags_of(path, sub=None):
    key = (path, sub)
    if key not in _flags_cache:
        argv = [path] + ([sub] if sub else []) + ["--help"]
        r = run(argv)
        _flags_cache[key] = (Flags(r.stdout), r.returncode)
    return _flags_cache[key]


def as_argv(value):
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def check_invocation(where, argv, programs, problems):
    """Checks one command line that runs one of our programs. Returns the
    program name, or None when argv runs something else."""
    if not argv:
        return None
    prog = os.path.basename(argv[0])
    if prog not in programs:
        if prog.startswith("device-assignment"):
            problems.add(f"{where}: runs {prog}, which this build does "
                         f"not produce")
        return None
    path = programs[prog]
    flags, rc = flags_of(path)
    if rc != 0 or not flags.by_name:
        problems.add(f"{where}: {prog} --help failed or listed no flags")
        return prog
    sub = None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            break
        if not arg.startswith("--"):
            if sub is not None:
                i += 1
                continue
            # A CLI subcommand: its name is in the program's --help; its own
            # flags, if any follow, come from "PROG SUB --help".
            sub = arg
            main_help = run([path, "--help"]).stdout
            if not re.search(rf"(^|\s){re.escape(sub)}(\s|$)", main_help,
                             re.M):
                problems.add(f"{where}: {prog} --help names no subcommand "
                             f"{sub!r}")
                return prog
            if any(a.startswith("--") for a in argv[i + 1:]):
                sub_flags, sub_rc = flags_of(path, sub)
                if sub_rc != 0:
                    problems.add(f"{where}: '{prog} {sub} --help' exits "
                                 f"{sub_rc}")
                    return prog
                flags = sub_flags
            i += 1
            continue
        name, eq, _ = arg[2:].partition("=")
        if name not in flags.by_name:
            scope = f"{prog} {sub}" if sub else prog
            problems.add(f"{where}: {scope} has no flag --{name} "
                         f"(not in its --help)")
            # Its value, if one follows, is not a subcommand.
            i += 1
            if not eq and i < len(argv) and not argv[i].startswith("--"):
                i += 1
            continue
        if flags.takes_value(name) and not eq:
            if i + 1 >= len(argv):
                problems.add(f"{where}: --{name} needs a value")
            i += 2
        else:
            if eq and not flags.takes_value(name):
                problems.add(f"{where}: --{name} is a switch, given a value")
            i += 1
    return prog


def command_argv(svc):
    """The argv a service runs, with a `sh -c '... exec "$@"' --` style
    entrypoint looked through."""
    entry = as_argv(svc.get("entrypoint"))
    cmd = as_argv(svc.get("command"))
    if entry and os.path.basename(entry[0]) in ("sh", "bash") and \
            len(entry) >= 3 and entry[1] == "-c":
        return cmd, entry[2]
    return entry + cmd, ""


def check_compose_data(data, programs):
    problems = Problems()
    services = data.get("services") or {}
    if not services:
        problems.add("no services")
    seen = set()
    for sname, svc in services.items():
        argv, shell_script = command_argv(svc)
        main = check_invocation(f"service {sname} command", argv, programs,
                                problems)
        if main is None:
            if svc.get("image", "").startswith("device-assignment:"):
                problems.add(f"service {sname}: runs the product image but "
                             f"its command names no program")
            continue
        seen.add(main)
        known_envs = set(flags_of(programs[main])[0].envs)
        hc = as_argv((svc.get("healthcheck") or {}).get("test"))
        if hc and hc[0] in ("CMD", "CMD-SHELL"):
            hc_argv = hc[1:] if hc[0] == "CMD" else shlex.split(hc[1])
            hc_prog = check_invocation(f"service {sname} healthcheck",
                                       hc_argv, programs, problems)
            if hc_prog:
                known_envs |= flags_of(programs[hc_prog])[0].envs
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.partition("=")[::2] for e in env)
        for key in env:
            if key.startswith("DAS_") and key not in known_envs:
                problems.add(f"service {sname}: environment {key} is read "
                             f"by none of its programs")
        for key in ENV_REF.findall(shell_script):
            if key not in known_envs:
                problems.add(f"service {sname}: entrypoint sets {key}, "
                             f"which {main} does not read")
    for name in programs:
        if name not in seen and name != "device-assignment":
            problems.add(f"no service runs {name}")
    return problems


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def cmd_compose(args):
    programs = parse_programs(args.program)
    return check_compose_data(load_yaml(args.compose),
                              programs).finish("config.compose")


def cmd_compose_selftest(args):
    """The compose check must reject what it is there to reject."""
    programs = parse_programs(args.program)
    data = load_yaml(args.compose)
    failures = []
    if check_compose_data(data, programs).lines:
        failures.append("the committed compose file does not pass")

    def mutate(label, change):
        bad = copy.deepcopy(data)
        change(bad["services"])
        if not check_compose_data(bad, programs).lines:
            failures.append(f"not rejected: {label}")

    def add_flag(svcs):
        svc = svcs["server"]
        svc["command"] = as_argv(svc.get("command")) + ["--no-such-flag",
                                                        "x"]

    def add_env(svcs):
        svcs["gateway"].setdefault("environment", {})["DAS_NO_SUCH"] = "1"

    def bad_health(svcs):
        svcs["server"]["healthcheck"]["test"] = [
            "CMD", "device-assignment", "--no-such-flag", "health"]

    def unknown_program(svcs):
        svcs["gateway"]["command"] = ["device-assignment-gatewayz"]

    mutate("unknown flag in a command", add_flag)
    mutate("unknown DAS_ variable", add_env)
    mutate("unknown flag in a healthcheck", bad_health)
    mutate("a program that does not exist", unknown_program)
    for f in failures:
        print(f"FAIL config.compose-selftest: {f}")
    if failures:
        return 1
    print("config.compose-selftest: 4 broken copies rejected")
    return 0


def cmd_help_version(args):
    programs = parse_programs(args.program)
    problems = Problems()
    readme = None
    if args.readme:
        with open(args.readme, encoding="utf-8") as f:
            readme = f.read()
    for name in args.expect:
        if name not in programs:
            problems.add(f"{name} is not built by this tree")
    for name, path in sorted(programs.items()):
        r = run([path, "--help"])
        if r.returncode != 0:
            problems.add(f"{name} --help exits {r.returncode}")
            continue
        flags = Flags(r.stdout)
        if not flags.by_name:
            problems.add(f"{name} --help lists no flag in the common shape")
        for fname, m in flags.by_name.items():
            want = "DAS_" + fname.upper().replace("-", "_")
            if m["env"] != want:
                problems.add(f"{name} --{fname}: env {m['env']}, "
                             f"expected {want}")
            if not (m["help"] or "").strip():
                problems.add(f"{name} --{fname}: no help text")
        for must in ("--help", "--version"):
            if not re.search(rf"^\s+{must}\s", r.stdout, re.M):
                problems.add(f"{name} --help does not list {must}")
        if readme is not None:
            for fname, m in flags.by_name.items():
                if f"`--{fname}" not in readme or m["env"] not in readme:
                    problems.add(f"README.md does not document {name} "
                                 f"--{fname} ({m['env']})")
        r = run([path, "--version"])
        if r.returncode != 0:
            problems.add(f"{name} --version exits {r.returncode}")
        elif r.stdout.strip() != f"{name} {args.version}":
            problems.add(f"{name} --version prints {r.stdout.strip()!r}, "
                         f"expected {name} {args.version!r}")
    return problems.finish("config.help-version")


# ---- Dockerfile and the package list ----

def read_package_list(path):
    """name -> set of tags, from deps/debian-packages.txt."""
    pkgs = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if words:
                pkgs[words[0]] = set(words[1:])
    return pkgs


def dockerfile_stages(path):
    """[(stage name, base image, [(INSTRUCTION, text)])] with continuation
    lines joined and comments dropped; ARG defaults substituted in FROM."""
    args = {}
    stages = []
    with open(path, encoding="utf-8") as f:
        joined = []
        buf = ""
        for raw in f:
            line = raw.rstrip("\n")
            if not buf and line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                buf += line[:-1] + " "
                continue
            buf += line
            if buf.strip():
                joined.append(buf.strip())
            buf = ""
    for line in joined:
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k.strip()] = v.strip()
        elif instr == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], ""),
                           words[0])
            name = words[2] if len(words) >= 3 and \
                words[1].upper() == "AS" else str(len(stages))
            stages.append((name, image, []))
        elif stages:
            stages[-1][2].append((instr, rest))
    return stages


def dpkg_owners(paths):
    """path -> the package that ships it (missing when none does), in one
    dpkg-query call; tries the /lib and /usr/lib spellings, since
    bookworm's merged /usr records either."""
    spellings = {}
    for path in paths:
        cands = {path, os.path.realpath(path)}
        for c in list(cands):
            if c.startswith("/usr/lib/"):
                cands.add(c[4:])
            elif c.startswith("/lib/"):
                cands.add("/usr" + c)
        for c in cands:
            spellings.setdefault(c, set()).add(path)
    if not spellings:
        return {}
    r = run(["dpkg-query", "-S"] + sorted(spellings), timeout=60)
    owners = {}
    for line in r.stdout.splitlines():
        pkg, sep, file = line.partition(": ")
        if not sep:
            continue
        pkg = pkg.split(",")[0].split(":")[0].strip()
        for orig in spellings.get(file.strip(), ()):
            owners.setdefault(orig, pkg)
    return owners


def installed_graph():
    """package -> set of packages it depends on (alternatives all kept),
    and the Essential ones; virtual names resolved through Provides."""
    r = run(["dpkg-query", "-W", "-f",
             "${Package}\t${Essential}\t${Depends}, ${Pre-Depends}\t"
             "${Provides}\t${db:Status-Abbrev}\n"], timeout=60)
    deps, essential, provides = {}, set(), {}
    for line in r.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) != 5 or not parts[4].startswith("ii"):
            continue
        name, ess, dep, prov, _ = parts
        names = set()
        for d in re.split(r"[,|]", dep):
            d = re.sub(r"\(.*?\)", "", d).strip().split(":")[0]
            if d:
                names.add(d)
        deps[name] = names
        if ess == "yes":
            essential.add(name)
        for p in prov.split(","):
            p = re.sub(r"\(.*?\)", "", p).strip()
            if p:
                provides.setdefault(p, set()).add(name)
    return deps, essential, provides


def closure(roots, deps, provides):
    seen = set()
    todo = list(roots)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        for d in deps.get(p, ()):
            todo.append(d)
            todo.extend(provides.get(d, ()))
    return seen


def cmd_dockerfile(args):
    problems = Problems()
    programs = parse_programs(args.program)
    pkgs = read_package_list(args.packages)
    all_tags = set().union(*pkgs.values()) if pkgs else set()
    stages = dockerfile_stages(args.dockerfile)
    names = [s[0] for s in stages]
    stage_tags = {}
    for name, image, instrs in stages:
        if image not in ("debian:bookworm-slim",) and image not in names:
            problems.add(f"stage {name}: FROM {image}, not "
                         f"debian:bookworm-slim")
        copied = set()
        tags_here = set()
        for instr, text in instrs:
            if instr == "COPY":
                srcs = [w for w in text.split() if not w.startswith("--")]
                copied.update(srcs[:-1])
            if instr != "RUN":
                continue
            if re.search(r"\bapt(-get)?\s+install\b", text):
                problems.add(f"stage {name}: installs packages with apt "
                             f"directly; install through scripts/deps.sh "
                             f"from deps/debian-packages.txt")
            for m in re.finditer(r"(\S*scripts/deps\.sh)((?:\s+[a-z]+)*)",
                                 text):
                tags = m[2].split()
                if not tags:
                    problems.add(f"stage {name}: deps.sh without a tag "
                                 f"installs every package")
                for t in tags:
                    if t not in all_tags:
                        problems.add(f"stage {name}: tag {t!r} is on no "
                                     f"line of {args.packages}")
                tags_here.update(tags)
                for need in ("deps/debian-packages.txt", "scripts/deps.sh"):
                    if need not in copied:
                        problems.add(f"stage {name}: runs deps.sh before "
                                     f"COPYing {need}")
        stage_tags[name] = tags_here
    for stage, tag in (("build", "build"), ("runtime", "runtime")):
        if stage not in names:
            problems.add(f"no stage named {stage}")
        elif tag not in stage_tags[stage]:
            problems.add(f"stage {stage} does not install the {tag!r} "
                         f"packages")
    runtime = dict((s[0], s[2]) for s in stages).get("runtime", [])
    users = [t.strip() for i, t in runtime if i == "USER"]
    if not users or users[-1] in ("root", "0"):
        problems.add("runtime stage runs as root")
    runtime_copies = " ".join(t for i, t in runtime if i == "COPY")
    for prog in ("device-assignment-server", "device-assignment-gateway",
                 "device-assignment"):
        if not re.search(rf"--from=build\s+\S*/{re.escape(prog)}\s",
                         runtime_copies + " "):
            problems.add(f"runtime stage does not copy {prog} from build")

    compose = load_yaml(args.compose)
    for sname, svc in (compose.get("services") or {}).items():
        build = svc.get("build")
        target = build.get("target") if isinstance(build, dict) else None
        if target and target not in names:
            problems.add(f"compose service {sname} builds target {target}, "
                         f"not a stage of the Dockerfile")

    # The runtime stage must carry every shared library the programs load
    # and every tool the healthchecks run: each must come from a package
    # tagged runtime, or one such package's dependencies, or the base image
    # (Essential packages and apt, with their dependencies).
    deps, essential, provides = installed_graph()
    runtime_pkgs = {p for p, t in pkgs.items() if "runtime" in t}
    for p in sorted(runtime_pkgs):
        if p not in deps:
            problems.add(f"runtime package {p} is not installed here, so "
                         f"its libraries cannot be checked")
    have = closure(runtime_pkgs | essential | {"apt"}, deps, provides)
    needs = {}
    for prog, path in sorted(programs.items()):
        r = run(["ldd", path])
        if r.returncode != 0:
            problems.add(f"ldd {prog} failed: {r.stderr.strip()}")
            continue
        for line in r.stdout.splitlines():
            m = re.search(r"=>\s+(/\S+)", line)
            if m:
                needs.setdefault(m[1], set()).add(prog)
    for hc_tool in ("curl",):
        for sname, svc in (compose.get("services") or {}).items():
            test = as_argv((svc.get("healthcheck") or {}).get("test"))
            if len(test) > 1 and test[0] == "CMD" and test[1] == hc_tool \
                    and svc.get("image", "").startswith("device-assignment:"):
                r = run(["sh", "-c", f"command -v {hc_tool}"])
                if r.returncode == 0:
                    needs.setdefault(r.stdout.strip(), set()).add(
                        f"healthcheck of {sname}")
    owners = dpkg_owners(needs)
    for lib, users_of in sorted(needs.items()):
        owner = owners.get(lib)
        if owner is None:
            problems.add(f"{lib} (needed by {', '.join(sorted(users_of))}) "
                         f"belongs to no Debian package")
        elif SANITIZER_PACKAGES.match(owner):
            continue  # only in sanitizer builds, never in the image
        elif owner not in have:
            problems.add(f"{lib} (needed by {', '.join(sorted(users_of))}) "
                         f"comes from {owner}, which the runtime stage "
                         f"does not install: tag it runtime in "
                         f"{args.packages}")
    return problems.finish("config.dockerfile")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["help-version", "compose",
                                     "compose-selftest", "dockerfile"])
    ap.add_argument("--program", action="append")
    ap.add_argument("--expect", action="append", default=[])
    ap.add_argument("--version")
    ap.add_argument("--compose")
    ap.add_argument("--dockerfile")
    ap.add_argument("--packages")
    ap.add_argument("--readme")
    args = ap.parse_args()
    handler = {
        "help-version": cmd_help_version,
        "compose": cmd_compose,
        "compose-selftest": cmd_compose_selftest,
        "dockerfile": cmd_dockerfile,
    }[args.mode]
    sys.exit(handler(args))


if __name__ == "__main__":
    main()
