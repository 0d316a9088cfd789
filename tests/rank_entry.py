"""`gram ARGS` as a torchrun worker (tests/test_parallel.py), then a report on stderr of whether
this rank left the process group before exiting: a group left to interpreter finalisation can
abort a gloo rank with SIGABRT ("terminate called without an active exception")."""

import sys

import torch.distributed

from gram_ppl.cli import main

if __name__ == "__main__":
    code = main(sys.argv[1:])
    print(f"process group left: {not torch.distributed.is_initialized()}", file=sys.stderr)
    sys.exit(code)
