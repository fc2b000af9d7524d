"""``hnas report DIR... [--out table.md] [--plot trajectory.png]``: aggregate search results (hnas.analysis.report)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from hnas.analysis.report import build_report
from hnas.cli import exits_on_user_error


@exits_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="hnas report", description="Aggregate search result.json files into a "
                                 "markdown table (mean ± std over seeds) and a trajectory plot.")
    ap.add_argument("dirs", nargs="+", help="directories searched recursively for result.json")
    ap.add_argument("--out", default=None, help="write the markdown here (plot beside it as .png)")
    ap.add_argument("--plot", default=None, help="PNG path of the trajectory plot")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    text = build_report(args.dirs, args.out, args.plot)
    if args.out is None:
        sys.stdout.write(text)
    else:
        logging.getLogger("hnas.report").info("wrote %s", args.out)
