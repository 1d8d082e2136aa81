"""``python -m fuzz [--cases N] [--seed S] [name ...]``: fuzz every parser and print a table.

Exits 1 when any parser let an exception other than an ``EvidenceError`` escape.
"""

from __future__ import annotations

import argparse
import sys

from fuzz.harness import discover, run_target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="name", help="parsers to fuzz (default: all)")
    parser.add_argument("--cases", type=int, default=10_000, help="cases per parser (default: 10,000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    targets = [target for target in discover() if not args.names or target.name in args.names]
    if not targets:
        parser.error("no such parser; choose from " + ", ".join(target.name for target in discover()))
    print("| Parser | Cases | Unhandled | Distinct crash sites |\n|---|---|---|---|", flush=True)
    failed = []
    for target in targets:
        result = run_target(target, args.cases, seed=args.seed)
        print(f"| {result.name} | {result.cases:,} | {result.unhandled:,} | {len(result.sites)} |", flush=True)
        if result.unhandled:
            failed.append(result)
    for result in failed:
        print(f"\n{result.name}: {result.example}", file=sys.stderr)
        for site, count in result.sites.most_common():
            print(f"    {count:6d}  {site}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
