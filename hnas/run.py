"""``python -m hnas.run +experiment=NAME [overrides]``: the card's command, the same as ``hnas run``."""

import sys

from hnas.cli import check_launcher
from hnas.cli.run import main

if __name__ == "__main__":
    check_launcher(sys.argv[1:])
    main()
