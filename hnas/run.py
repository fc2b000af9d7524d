"""``python -m hnas.run +experiment=NAME [overrides]``: the card's command, the same as ``hnas run``."""

from hnas.cli.run import main

if __name__ == "__main__":
    main()
