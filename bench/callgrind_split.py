#!/usr/bin/env python3
"""Instructions per request from a callgrind dump, split by shared object
and by function (self cost: each instruction counted once).

    callgrind_split.py FILE REQUESTS [TOP]

Prints "total <Ir per request>" then "obj <name> <Ir/req> <share>" lines
and the TOP functions as "fn <name> <Ir/req> <share>".
"""
import collections
import os
import sys


def parse(path):
    names = {"ob": {}, "fn": {}}
    by_obj = collections.Counter()
    by_fn = collections.Counter()
    ob = fn = "?"
    skip_next = False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                if skip_next:  # inclusive cost of a call: not self cost
                    skip_next = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    ir = int(parts[1])
                    by_obj[ob] += ir
                    by_fn[(ob, fn)] += ir
                continue
            key, _, val = line.partition("=")
            if key == "calls":
                skip_next = True
            elif key in ("ob", "fn"):
                cur = resolve(names[key], val)
                if key == "ob":
                    ob = cur
                else:
                    fn = cur
            elif key in ("cob", "cfn"):
                resolve(names[key[1:]], val)
    return by_obj, by_fn


def resolve(table, val):
    """Callgrind name compression: "(id) name" defines, "(id)" refers."""
    if val.startswith("("):
        ident, _, name = val.partition(")")
        name = name.strip()
        if name:
            table[ident] = name
        return table.get(ident, val)
    return val


def short_obj(ob):
    base = os.path.basename(ob)
    for suffix in (".so",):
        i = base.find(suffix)
        if i > 0:
            base = base[:i]
    return base


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 12
    by_obj, by_fn = parse(path)
    total = sum(by_obj.values())
    print("total %d" % (total / n))
    grouped = collections.Counter()
    for ob, ir in by_obj.items():
        grouped[short_obj(ob)] += ir
    for ob, ir in grouped.most_common():
        if ir / total >= 0.005:
            print("obj %s %d %.1f%%" % (ob, ir / n, 100.0 * ir / total))
    for (ob, fn), ir in by_fn.most_common(top):
        print("fn %s [%s] %d %.1f%%" % (fn, short_obj(ob), ir / n,
                                        100.0 * ir / total))


if __name__ == "__main__":
    main()
