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
-- KEYS[3+2i]      lease key of candidate i       (i = 1..#ARGV)
-- KEYS[4+2i]      processing list of candidate i
-- ARGV[i]         consumer id of candidate i
-- returns         number of messages moved back to pending (to the front, oldest first)
local moved = 0
for i = 1, #ARGV do
  local lease, processing = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 1 and redis.call('EXISTS', lease) == 0 then
    while redis.call('LMOVE', processing, KEYS[2], 'LEFT', 'RIGHT') do
      moved = moved + 1
    end
    redis.call('SREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[4], ARGV[i])
  end
end
if moved > 0 then redis.call('HINCRBY', KEYS[3], 'recovered', moved) end
return moved
