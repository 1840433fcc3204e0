"""What operators run and read: the CLI, stats snapshots, systemd instances, ``redisq up``, logs."""
