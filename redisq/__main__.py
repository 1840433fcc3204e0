"""``python -m redisq`` is the ``redisq`` command."""

from .cli import main

main()
