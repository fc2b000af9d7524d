"""``hnas nats-export <NATS-tss path> <out.csv>``: the official NATS-Bench topology file -> the compact CSV."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from hnas.benchmarks.nats_export import export_from_nats_path
from hnas.cli import exits_on_user_error


@exits_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hnas nats-export", description="Export the official NATS-Bench "
                                     "topology benchmark (needs pip install 'hnas[nats]') to hnas's compact CSV.")
    parser.add_argument("nats_path", help="official NATS-Bench topology file/folder (NATS-tss-v1_0-3ffb9-simple)")
    parser.add_argument("out_csv", help="compact CSV to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    export_from_nats_path(args.nats_path, args.out_csv)
