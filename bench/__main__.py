"""``python -m bench [name ...] [--quick]``: run the benchmarks, print one line each.

Exits 1 when any benchmark misses its target or fails to run, so ``make bench`` can gate on it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from bench import BENCHMARKS, Result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="name", help=f"benchmarks to run (default: all of {BENCHMARKS})")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats, for a smoke test")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = list(dict.fromkeys(args.names)) or list(BENCHMARKS)

    ok = True
    for name in names:
        print(f"running {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        try:
            result: Result = importlib.import_module(f"bench.{name}").run(quick=args.quick)
        except Exception as error:  # one broken benchmark must not hide the others' results
            traceback.print_exc(file=sys.stderr)
            print(f"{name}: ERROR {type(error).__name__}: {error}", flush=True)
            ok = False
            continue
        print(result.line, flush=True)
        ok = ok and result.passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
