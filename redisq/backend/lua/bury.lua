#!lua flags=allow-oom
-- bury: move a reserved message to the dead-letter list, with the reason it could not be run.
--
-- KEYS[1]  processing list   redisq:{q}:processing:<consumer>
-- KEYS[2]  dead list         redisq:{q}:dead
-- KEYS[3]  stats hash        redisq:{q}:stats
-- ARGV[1]  the message as reserved (removed from the processing list)
-- ARGV[2]  the dead-letter entry to store (JSON: reason, time, original message)
-- ARGV[3]  most entries the dead list keeps (oldest dropped beyond it; 0 = unbounded)
-- returns  1 if buried, 0 if the message was no longer held by this consumer
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
local cap = tonumber(ARGV[3])
if cap > 0 then redis.call('LTRIM', KEYS[2], 0, cap - 1) end
redis.call('HINCRBY', KEYS[3], 'dead', 1)
return 1
