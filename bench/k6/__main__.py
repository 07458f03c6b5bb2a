"""``python -m bench.k6``: the seed's stampede in k6 against any stack (docs/benchmark.md).

    manage.py flashsale shoppers 1000 --json > shoppers.json
    python -m bench.k6 --url http://127.0.0.1:8000 --sale 1 --shoppers shoppers.json --vus 1000

Closed loop by default (every virtual user presses again as soon as it has its answer);
``--rate`` makes it open loop. Prints one line in the benchmark's terms; ``--json`` the summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..loadgen import LoadGeneratorError
from . import stampede_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.k6", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the web process (default: make run's)")
    parser.add_argument("--sale", type=int, required=True, help="the sale's id")
    parser.add_argument(
        "--shoppers",
        type=Path,
        required=True,
        help="`manage.py flashsale shoppers N --json`'s output, or a benchmark request file (<token>\\t<body> lines)",
    )
    parser.add_argument("--vus", type=int, default=1000, help="virtual users, each one connection (default 1000)")
    parser.add_argument("--iterations", type=int, default=None, help="presses in all (closed loop; default 100000)")
    parser.add_argument("--rate", type=float, default=0.0, help="presses a second: open loop (default: closed)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of an open-loop run (default 10)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    try:
        result = stampede_run(
            base_url=args.url,
            sale_id=args.sale,
            shoppers=args.shoppers,
            vus=args.vus,
            iterations=args.iterations,
            rate=args.rate,
            duration_s=args.duration,
        )
    except LoadGeneratorError as error:
        print(f"python -m bench.k6: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({k: v for k, v in asdict(result).items() if k != "raw"} | {"rps": result.rps}, indent=2))
    else:
        print(result.line())
    return 1 if result.socket_errors else 0


if __name__ == "__main__":
    sys.exit(main())
