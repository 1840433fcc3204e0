#!lua flags=allow-oom
-- renew: register a consumer on a queue and refresh its lease, also at maxmemory (a lease that
-- could not be renewed there would expire, and the consumer that frees memory would lose its
-- reservations to recovery).
--
-- KEYS[1]  consumers set     redisq:{q}:consumers
-- KEYS[2]  lease key         redisq:{q}:lease:<consumer>
-- ARGV[1]  consumer id
-- ARGV[2]  lease length in milliseconds
-- returns  1
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 1
