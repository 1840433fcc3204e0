"""The Redis seam: key schema, clients (URL, Sentinel, Cluster), the wire format, the Lua
steps, backoff, and the records of jobs, queues and workers. Imports nothing above it."""
