"""``hnas efficiency DIR... [--at 5 10 20] [--out table.md]``: query efficiency of search runs
(hnas.analysis.efficiency): the incumbent's test accuracy after k queries and the queries to the best value."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from hnas.analysis.efficiency import efficiency_table
from hnas.analysis.report import ReportError, find_results, load_results
from hnas.cli import exits_on_user_error
from hnas.files import atomic_write_text


@exits_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="hnas efficiency", description="Query efficiency of search result.json "
                                 "files: test accuracy after k queries, queries to the best value.")
    ap.add_argument("dirs", nargs="+", help="directories searched recursively for result.json")
    ap.add_argument("--at", nargs="+", type=int, default=[5, 10, 20], help="query counts k (default 5 10 20)")
    ap.add_argument("--out", default=None, help="write the markdown table here (default: stdout)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if any(k < 1 for k in args.at):
        raise ReportError(f"--at wants positive query counts, got {args.at}")
    text = efficiency_table(load_results(find_results(args.dirs)), args.at)
    if args.out is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(args.out, text)
        logging.getLogger("hnas.efficiency").info("wrote %s", args.out)
