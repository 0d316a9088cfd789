"""`python -m gram_ppl` runs the `gram` command line."""

import sys

from gram_ppl.cli import main

if __name__ == "__main__":
    sys.exit(main())
