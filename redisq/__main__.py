"""``python -m redisq`` is the ``redisq`` command."""

from .ops.cli import main

main()
