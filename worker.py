"""``python worker.py ...`` runs the redisq CLI's worker (``redisq worker ...``), for
deployments that prefer a script to a console entry point."""

import sys

from redisq.ops.cli import main

if __name__ == "__main__":
    sys.argv[1:1] = ["worker"]
    main()
