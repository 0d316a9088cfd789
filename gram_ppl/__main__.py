"""`python -m gram_ppl` runs the `gram` command line."""

from gram_ppl.cli import exit_process, main

if __name__ == "__main__":
    exit_process(main())
