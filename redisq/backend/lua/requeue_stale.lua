#!lua flags=allow-oom
-- requeue_stale: give the messages of consumers whose lease expired back to the queue.
-- Each candidate is re-checked here (still registered, lease gone) and its processing list is
-- emptied in the same atomic step, so a message is recovered exactly once however many
-- consumers race to do it. Its epoch ends in the same step (see renew.lua): if it was only
-- frozen, whatever it still tries to start or settle under that epoch is refused.
--
-- KEYS[1]         consumers set     redisq:{q}:consumers
-- KEYS[2]         pending list      redisq:{q}:pending
-- KEYS[3]         stats hash        redisq:{q}:stats
-- KEYS[4]         epochs hash       redisq:{q}:epochs
-- KEYS[2+3i]      lease key of candidate i       (i = 1..#ARGV)
-- KEYS[3+3i]      processing list of candidate i
-- KEYS[4+3i]      inbox of candidate i           (a blocking move's message not claimed yet)
-- ARGV[i]         consumer id of candidate i
-- returns         number of messages moved back to pending (to the front, oldest first)
local moved = 0
for i = 1, #ARGV do
  local lease = KEYS[2 + 3 * i]
  if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 1 and redis.call('EXISTS', lease) == 0 then
    for _, list in ipairs({KEYS[3 + 3 * i], KEYS[4 + 3 * i]}) do
      while redis.call('LMOVE', list, KEYS[2], 'LEFT', 'RIGHT') do
        moved = moved + 1
      end
    end
    redis.call('SREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[4], ARGV[i])
  end
end
if moved > 0 then redis.call('HINCRBY', KEYS[3], 'recovered', moved) end
return moved
