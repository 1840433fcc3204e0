"""Queues and channels on top of the backend: reserve/ack/nack with leases, blocking waits,
resting queues of failed nodes, durable pub/sub and its sharded (Cluster) form."""
