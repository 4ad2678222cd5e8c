"""`python -m sgdsim.sim`: the same program as the `sgdsim` console script."""
import sys

from sgdsim.sim._cli import main

if __name__ == "__main__":
    sys.exit(main())
