#!/usr/bin/env python3
"""The one table of `make bench`: medians of the rounds, every ratio of the
issue's targets (each the median of the per-round ratios, so both sides of
a ratio come from the same round), and the per-request sections.

    table.py RESULTS [EXTRAS [PAIRS]]

RESULTS lines: ROW ROUND REQ_PER_S P50_MS P99_MS NON_OK REQUESTS
EXTRAS lines (optional): free text printed after the table (perf stat and
callgrind sections, the grpc-status checks).
PAIRS lines (optional): A B ROUND K REQ_PER_S_A REQ_PER_S_B, one per pair
of adjacent loads of rows A and B (bench/run.sh PAIRS). A ratio of two
rows loaded in pairs is the median of all their pair ratios (every round),
printed with the number of pairs and their quartiles; any other ratio is
the median of the per-round ratios.
"""
import statistics
import sys

ROWS = [
    ("nginx_201", "nginx, fixed 201 (wrk -c32)"),
    ("nginx_hop", "nginx -> nginx proxy hop (wrk -c32)"),
    ("rest_read", "REST read: PUT assign repeated over 64 users, SQLite"),
    ("rest_write", "REST writes: each PUT moves a device, SQLite"),
    ("rest_read_pg", "REST read, PostgreSQL store"),
    ("rest_read_pg2", "REST read, two PostgreSQL replicas behind one gateway"),
    ("rest_write_pg", "REST writes, PostgreSQL store"),
    ("pgbench_S", "pgbench -S -c32 (select-only), same PostgreSQL"),
    ("pgbench_N", "pgbench -N -c32 (simple-update), same PostgreSQL"),
    ("grpc_health", "gRPC Health/Check (h2load 4x8)"),
    ("grpc_assign", "gRPC AssignDevice repeat (h2load 4x8)"),
    ("grpc_assign_nocache", "gRPC AssignDevice, --token-cache 0"),
    ("obs_off", "REST GET list, metrics off, logs at warn"),
    ("obs_on", "REST GET list, metrics + JSON access logs on"),
    ("peer_rest", "peer: grpc-gateway -> Go server (wrk -c32)"),
    ("peer_gw_ours", "peer grpc-gateway -> our server (wrk -c32)"),
    ("peer_grpc", "peer: Go server AssignDevice (h2load 4x8)"),
]

# (label, numerator, denominator, target or None for information only)
RATIOS = [
    ("gRPC AssignDevice / own Health", "grpc_assign", "grpc_health", 0.60),
    ("gRPC AssignDevice / Go peer", "grpc_assign", "peer_grpc", 0.70),
    ("REST read / peer REST stack", "rest_read", "peer_rest", 1.8),
    ("REST read / grpc-gateway on our server", "rest_read", "peer_gw_ours",
     2.5),
    ("REST read / nginx 201", "rest_read", "nginx_201", 0.25),
    ("REST writes / REST read", "rest_write", "rest_read", 0.70),
    ("PostgreSQL read / SQLite read", "rest_read_pg", "rest_read", 0.60),
    ("PostgreSQL writes / pgbench -N", "rest_write_pg", "pgbench_N", 0.50),
    ("two PostgreSQL replicas / one (read)", "rest_read_pg2", "rest_read_pg",
     1.0),
    ("metrics + JSON logs on / off (issue 12)", "obs_on", "obs_off", 0.97),
    ("PostgreSQL read / pgbench -S", "rest_read_pg", "pgbench_S", None),
    ("REST read / nginx proxy hop", "rest_read", "nginx_hop", None),
    ("nginx proxy hop / nginx 201", "nginx_hop", "nginx_201", None),
    ("token cache: AssignDevice cached / uncached", "grpc_assign",
     "grpc_assign_nocache", None),
]


def load(path):
    data = {}
    for line in open(path):
        f = line.split()
        if len(f) < 7:
            continue
        row, rnd = f[0], int(f[1])
        data.setdefault(row, {})[rnd] = {
            "rps": float(f[2]), "p50": float(f[3]), "p99": float(f[4]),
            "bad": int(f[5]), "n": int(f[6])}
    return data


def load_pairs(path):
    pairs = {}
    try:
        lines = open(path).read().split("\n")
    except OSError:
        return pairs
    for line in lines:
        f = line.split()
        if len(f) < 6:
            continue
        a, b, ra, rb = f[0], f[1], float(f[4]), float(f[5])
        pairs.setdefault((a, b), []).append((ra, rb))
    return pairs


def pair_ratios(pairs, a, b):
    """Ratios a / b of every pair of loads of a and b, or None."""
    if (a, b) in pairs:
        return [ra / rb for ra, rb in pairs[(a, b)] if rb > 0]
    if (b, a) in pairs:
        return [ra / rb for rb, ra in pairs[(b, a)] if rb > 0]
    return None


def quartiles(vals):
    if len(vals) < 2:
        return vals[0], vals[0]
    q = statistics.quantiles(vals, n=4, method="inclusive")
    return q[0], q[2]


def med(vals):
    vals = [v for v in vals if v >= 0]
    return statistics.median(vals) if vals else None


def fmt_ms(v):
    return "-" if v is None else "%.2f" % v


def main():
    data = load(sys.argv[1])
    pairs = load_pairs(sys.argv[3]) if len(sys.argv) > 3 else {}
    out = []
    out.append("| row | req/s (median) | p50 ms | p99 ms | non-2xx / non-OK "
               "| rounds (req/s) |")
    out.append("|---|---:|---:|---:|---:|---|")
    for key, label in ROWS:
        if key not in data:
            continue
        rounds = data[key]
        rps = med([r["rps"] for r in rounds.values()])
        p50 = med([r["p50"] for r in rounds.values()])
        p99 = med([r["p99"] for r in rounds.values()])
        bad = sum(r["bad"] for r in rounds.values())
        total = sum(r["n"] for r in rounds.values())
        out.append("| %s | %.0f | %s | %s | %d of %d | %s |" % (
            label, rps, fmt_ms(p50), fmt_ms(p99), bad, total,
            " ".join("%.0f" % rounds[k]["rps"] for k in sorted(rounds))))
    out.append("")
    out.append("| ratio (median of per-round ratios, or of pair ratios) "
               "| value | target | |")
    out.append("|---|---:|---:|---|")
    for label, a, b, target in RATIOS:
        if a not in data or b not in data:
            out.append("| %s | - | %s | not measured (row missing) |" % (
                label, "-" if target is None else "≥ %.2f" % target))
            continue
        rs = pair_ratios(pairs, a, b)
        how = ""
        if rs:
            lo, hi = quartiles(rs)
            how = " (median of %d pair ratios, quartiles %.3f-%.3f)" % (
                len(rs), lo, hi)
        else:
            common = sorted(set(data[a]) & set(data[b]))
            rs = [data[a][k]["rps"] / data[b][k]["rps"] for k in common
                  if data[b][k]["rps"] > 0]
        v = statistics.median(rs) if rs else float("nan")
        if target is None:
            out.append("| %s%s | %.3f | - | information |" % (label, how, v))
        else:
            out.append("| %s%s | %.3f | ≥ %.2f | %s |" % (
                label, how, v, target, "met" if v >= target else "not met"))
    if "rest_read" in data:
        p99 = med([r["p99"] for r in data["rest_read"].values()])
        out.append("| REST read p99 at 32 connections (ms) | %.2f | < 5 | %s |"
                   % (p99, "met" if p99 < 5 else "not met"))
    print("\n".join(out))
    if len(sys.argv) > 2:
        try:
            extra = open(sys.argv[2]).read()
        except OSError:
            extra = ""
        if extra.strip():
            print()
            print(extra.rstrip())


if __name__ == "__main__":
    main()
