#!/usr/bin/python3
"""The docs page in headless Chromium against the real gateway.

Starts the server and the gateway, checks GET /docs answers with a tight
Content-Security-Policy, then loads it in Debian's chromium (driven by
puppeteer-core, node/docs_page.mjs): no console error, no failed request,
the assign operation shown; screenshots go to --out.

usage: check_docs_page.py --server EXE --gateway EXE --cli EXE
       --node-dir DIR --out DIR
"""
import argparse
import os
import shutil
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from das_stack import Stack  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def main():
    ap = argparse.ArgumentParser()
    for a in ("server", "gateway", "cli", "node-dir", "out"):
        ap.add_argument("--" + a, required=True)
    a = ap.parse_args()
    if not os.access(CHROMIUM, os.X_OK):
        sys.exit("chromium not found: install it (deps/debian-packages.txt, "
                 "scripts/deps.sh test)")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node",
                          "docs_page.mjs")
    local = os.path.join(a.node_dir, "docs_page.mjs")
    shutil.copyfile(script, local)  # ESM finds its packages next to it
    with Stack(a.server, a.cli, gateway=a.gateway) as stack:
        url = f"http://{stack.http_addr}/docs"
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                csp = r.headers.get("Content-Security-Policy", "")
                print(f"GET /docs: {r.status} {r.headers['Content-Type']}")
                print(f"Content-Security-Policy: {csp}")
        except urllib.error.HTTPError as e:
            print(f"GET /docs: {e.code} (was the gateway built without the "
                  "docs UI? see DAS_DOCS_UI in gateway/CMakeLists.txt)")
            return 1
        r = subprocess.run(["node", local, "--url", url, "--out", a.out,
                            "--chromium", CHROMIUM], timeout=300)
    if any(c != 0 for c in stack.exit_codes.values()):
        print(f"FAIL server or gateway did not exit 0 on SIGTERM: {stack.exit_codes}")
        return 1
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
