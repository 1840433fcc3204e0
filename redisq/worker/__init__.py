"""The daemons: the prodcons worker, the pub/sub worker, the scheduler, and their parts
(the pure execute step, the pool, the recorder, the systemd notifier)."""
