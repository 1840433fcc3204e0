#!lua flags=allow-oom
-- beat: write a worker's registry entry when Redis is at maxmemory (the registry's usual
-- HSET is refused there, and a worker that drains a full Redis must not look dead). The
-- entry is small and bounded: one hash per worker.
--
-- KEYS[1]  worker entry      redisq:worker:<id>
-- ARGV[1]  entry TTL in milliseconds
-- ARGV[2..] field, value pairs
-- returns  1
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
