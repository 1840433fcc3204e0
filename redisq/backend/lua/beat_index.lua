#!lua flags=allow-oom
-- beat_index: list a worker in the workers index when Redis is at maxmemory (see beat.lua; a
-- separate step because the index and the entry are in different Cluster slots).
--
-- KEYS[1]  workers index     redisq:workers
-- ARGV[1]  last heartbeat (unix seconds)
-- ARGV[2]  worker id
-- returns  1
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
return 1
