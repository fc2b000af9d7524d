"""``python -m hnas.train arch=... [overrides]``: the same as ``hnas train`` (and what the other ranks of a
multi-GPU ``hnas train`` run)."""

from hnas.cli.train import main

if __name__ == "__main__":
    main()
