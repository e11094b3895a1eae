#!/usr/bin/python3
"""Installs the Node.js tools of the discovery tests (package-lock.json,
pinned) into DIR with `npm ci`; skips the install when DIR already holds
exactly that lock file's packages. Run by ctest as the fixture of the tests
that need Node.js.

usage: node_tools.py --src tests/discovery/node --dir BUILD/discovery-node
"""
import argparse
import filecmp
import os
import shutil
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: the discovery tests need Node.js with "
                     "npm (deps/debian-packages.txt: nodejs)")
    os.makedirs(a.dir, exist_ok=True)
    lock = os.path.join(a.src, "package-lock.json")
    stamp = os.path.join(a.dir, "node_modules", ".das-package-lock.json")
    if os.path.exists(stamp) and filecmp.cmp(lock, stamp, shallow=False):
        print(f"node tools up to date in {a.dir}")
        return 0
    for f in ("package.json", "package-lock.json"):
        shutil.copyfile(os.path.join(a.src, f), os.path.join(a.dir, f))
    r = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit",
                        "--no-fund", "--loglevel=error"], cwd=a.dir, timeout=600)
    if r.returncode != 0:
        return r.returncode
    shutil.copyfile(lock, stamp)
    print(f"node tools installed in {a.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
