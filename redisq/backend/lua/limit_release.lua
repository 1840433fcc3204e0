#!lua flags=allow-oom
-- limit_release: a job of a concurrency-limited task ended: give its slot back and wake
-- one job that waits for it (moved from the delayed set to the front of the queue, so it is
-- the next taken). A waiter whose message already left the delayed set (promoted when its
-- wait ran out, or cancelled) is skipped. Without this step (the worker died after settling)
-- the slot frees when its lease runs out, and the waiters are promoted then.
--
-- KEYS[1]  holders zset      redisq:{q}:running:<task>
-- KEYS[2]  waiting zset      redisq:{q}:waiting:<task>
-- KEYS[3]  delayed zset      redisq:{q}:delayed
-- KEYS[4]  pending list      redisq:{q}:pending
-- ARGV[1]  job id
-- returns  1 if a waiter was woken, else 0
redis.call('ZREM', KEYS[1], ARGV[1])
for _ = 1, 16 do
  local first = redis.call('ZPOPMIN', KEYS[2])
  if #first == 0 then return 0 end
  if redis.call('ZREM', KEYS[3], first[1]) == 1 then
    redis.call('RPUSH', KEYS[4], first[1])
    return 1
  end
end
return 0
