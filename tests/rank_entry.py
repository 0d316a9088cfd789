"""`gram ARGS` as a torchrun worker (tests/test_parallel.py), then a report on stderr of whether
this rank left the process group before exiting; then it exits as `python -m gram_ppl` does
(gram_ppl.cli.exit_process: a worker skips interpreter finalisation, where gloo's threads can
abort a rank with SIGABRT, "terminate called without an active exception")."""

import sys

import torch.distributed

from gram_ppl.cli import exit_process, main

if __name__ == "__main__":
    code = main(sys.argv[1:])
    print(f"process group left: {not torch.distributed.is_initialized()}", file=sys.stderr)
    exit_process(code)  # as `python -m gram_ppl` does: a worker skips interpreter finalisation
