#!lua flags=allow-oom
-- nack: give a reserved message back to its queue (next in line, or at the back).
-- It moves only if it is still in this consumer's processing list, so a message is never
-- requeued twice (e.g. once here and once by lease recovery).
--
-- KEYS[1]  processing list   redisq:{q}:processing:<consumer>
-- KEYS[2]  pending list      redisq:{q}:pending
-- KEYS[3]  stats hash        redisq:{q}:stats
-- ARGV[1]  the message
-- ARGV[2]  "front" to be taken next, "back" to wait behind everything queued
-- returns  1 if requeued, 0 if it was no longer held by this consumer
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then return 0 end
if ARGV[2] == 'front' then
  redis.call('RPUSH', KEYS[2], ARGV[1])
else
  redis.call('LPUSH', KEYS[2], ARGV[1])
end
redis.call('HINCRBY', KEYS[3], 'requeued', 1)
return 1
