#!/usr/bin/python3
"""The OpenAPI document cannot drift from the route and status tables.

Starts the real server and gateway, fetches GET /openapi.json and checks it
against the route table and the status table (route_table tool):
- the served document is the build output, byte for byte;
- every (method, path) of the route table is an operation, and there is no
  other operation; path parameters carry their formats;
- every row of the status table with an HTTP status is an example of a response (or of
  components.responses) with its HTTP code and message, and every example
  is a row; 401 carries WWW-Authenticate, 201 Location, 405 Allow;
- assign has the accept-charges header and the four clientType values,
  upstream operations ask for the bearer JWT, local ones nothing;
then runs the validator (@apidevtools/swagger-parser, Node.js) on the
served document and on the build output, and prints its verdict.

usage: check_openapi.py --route-table EXE --openapi FILE --server EXE
       --gateway EXE --cli EXE --node-dir DIR
"""
import argparse
import json
import os
import re
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from das_stack import Stack  # noqa: E402

CAPTURES = {"accountTenantId": "{A}", "customerTenantId": "{T}",
            "userId": "{U}", "deviceId": "{D}", "file": "{F}"}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def deref(doc, obj):
    while isinstance(obj, dict) and "$ref" in obj:
        node = doc
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def template_re(message):
    return "^" + re.escape(message).replace("%s", ".*") + "$"


def check_document(doc, table):
    # Routes <-> operations.
    want = {(r["method"], r["path"]) for r in table["routes"]}
    got, ops = set(), {}
    for path, item in doc["paths"].items():
        canon = re.sub(r"\{(\w+)\}", lambda m: CAPTURES.get(m.group(1), "?"), path)
        for method, op in item.items():
            if method in METHODS:
                got.add((method.upper(), canon))
                ops[(method.upper(), canon)] = (path, op)
    for m, p in sorted(want - got):
        check(False, f"route {m} {p} missing from the document")
    for m, p in sorted(got - want):
        check(False, f"operation {m} {p} is not a route of the table")
    check(want == got, f"{len(got)} operations = the {len(want)} routes of the table")
    upstream = {(r["method"], r["path"]) for r in table["routes"] if r["upstream"]}
    rpc_of = {(r["method"], r["path"]): r["rpc"] for r in table["routes"]}

    # http 0: answered over gRPC only (Health's unknown service), no route
    rows = {s["name"]: s for s in table["statuses"] if s["http"] != 0}
    seen_rows = set()

    def walk_responses(where, responses, is_keyed_by_code=True):
        for key, resp in responses.items():
            resp = deref(doc, resp)
            code = key
            if not is_keyed_by_code:  # components.responses: by name
                exs = resp["content"]["application/json"]["examples"].values()
                code = str(next(iter(exs))["value"]["error"])
            media = resp.get("content", {}).get("application/json", {})
            for name, ex in media.get("examples", {}).items():
                ex = deref(doc, ex)
                row = rows.get(name)
                if not row:
                    check(False, f"{where} {code}: example {name} is not a status row")
                    continue
                seen_rows.add(name)
                value = ex["value"]
                good = str(row["http"]) == code
                if row["grpc"] != 0:  # an error row
                    good = good and value.get("error") == row["http"] and \
                        re.match(template_re(row["message"]), value.get("message", "")) \
                        and value.get("status") == "error"
                else:
                    good = good and value.get("status") == row["message"]
                if not good:
                    check(False, f"{where} {code}: example {name} does not match its row")
            if code == "401":
                if "WWW-Authenticate" not in resp.get("headers", {}):
                    check(False, f"{where} 401 without WWW-Authenticate")
            if code == "405" and "Allow" not in resp.get("headers", {}):
                check(False, f"{where} 405 without Allow")
            if code == "201" and "Location" not in resp.get("headers", {}):
                check(False, f"{where} 201 without Location")

    for key, (path, op) in sorted(ops.items()):
        where = f"{key[0]} {path}"
        walk_responses(where, op["responses"])
        params = [deref(doc, p) for p in op.get("parameters", [])]
        names = {p["name"] for p in params}
        for cap, letter in CAPTURES.items():
            if letter in key[1] and cap not in names:
                check(False, f"{where}: path parameter {cap} not declared")
        for p in params:
            s = p.get("schema", {})
            if p["name"] in ("accountTenantId", "customerTenantId"):
                if not (s.get("pattern") and re.match(s["pattern"], "6fa459ea-ee8a-4ca4-894e-db77e160355e")
                        and re.match(s["pattern"], "{6FA459EAEE8A4CA4894EDB77E160355E}")
                        and not re.match(s["pattern"], "not-a-guid")):
                    check(False, f"{where}: {p['name']} has no GUID pattern")
            if p["name"] in ("userId", "deviceId"):
                if not (s.get("maxLength") == 64 and s.get("minLength") == 1 and
                        re.match(s["pattern"], "a.b_c-1") and not re.match(s["pattern"], "a b")):
                    check(False, f"{where}: {p['name']} has not the id charset and length")
        is_upstream = key in upstream
        sec = op.get("security")
        if is_upstream and sec != [{"bearerAuth": []}]:
            check(False, f"{where}: upstream operation without bearer JWT security")
        if not is_upstream and sec != []:
            check(False, f"{where}: local operation asks for a token")
        if rpc_of[key] == "assign":
            if "accept-charges" not in names:
                check(False, f"{where}: no accept-charges header")
            body = deref(doc, op["requestBody"]["content"]["application/json"]["schema"])
            ct = deref(doc, body["properties"]["clientType"])
            if sorted(ct.get("enum", [])) != ["crm", "desktop", "mobile", "webrtc"]:
                check(False, f"{where}: clientType is not the four values")
            if "402" not in op["responses"]:
                check(False, f"{where}: no 402")
    walk_responses("components", doc.get("components", {}).get("responses", {}),
                   is_keyed_by_code=False)
    for name in sorted(set(rows) - seen_rows):
        check(False, f"status row {name} missing from the document")
    check(seen_rows == set(rows),
          f"{len(seen_rows)} status rows shown = the {len(rows)} rows of the table")
    check(doc["components"]["securitySchemes"]["bearerAuth"] ==
          {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
           "description": doc["components"]["securitySchemes"]["bearerAuth"].get("description")},
          "bearer JWT security scheme")


def main():
    ap = argparse.ArgumentParser()
    for a in ("route-table", "openapi", "server", "gateway", "cli", "node-dir"):
        ap.add_argument("--" + a, required=True)
    a = ap.parse_args()

    table = json.loads(subprocess.run([a.route_table], check=True,
                                      capture_output=True, text=True).stdout)
    with open(a.openapi, "rb") as f:
        built = f.read()
    with Stack(a.server, a.cli, gateway=a.gateway) as stack:
        url = f"http://{stack.http_addr}/openapi.json"
        with urllib.request.urlopen(url, timeout=30) as r:
            served = r.read()
            check(r.status == 200 and
                  r.headers["Content-Type"].startswith("application/json"),
                  f"GET /openapi.json: {r.status} {r.headers['Content-Type']}")
        check(served == built.rstrip(b"\n"),
              "served document = build output openapi.json")
        doc = json.loads(served)
        check(doc.get("openapi", "").startswith("3.0."), f"openapi {doc.get('openapi')}")
        check_document(doc, table)

        validator = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                 "node", "validate_openapi.mjs")
        env = dict(os.environ, NODE_PATH=os.path.join(a.node_dir, "node_modules"))
        # ESM resolves packages from the script's folder: run a copy there.
        local = os.path.join(a.node_dir, "validate_openapi.mjs")
        with open(validator) as src, open(local, "w") as dst:
            dst.write(src.read())
        r = subprocess.run(["node", local, url, a.openapi], env=env,
                           capture_output=True, text=True, timeout=120)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        check(r.returncode == 0, "validator verdict: valid")
    check(all(c == 0 for c in stack.exit_codes.values()),
          f"server and gateway exit 0 on SIGTERM: {stack.exit_codes}")
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("openapi: no drift, valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
