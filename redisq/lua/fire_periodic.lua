-- fire_periodic: queue one tick of a periodic job, exactly once.
-- The last fired tick lives under the queue's hash tag, and this step moves it forward only
-- if the tick is newer, so two schedulers that both believe they lead (a lease handover) can
-- never fire a tick twice; the job id is derived from the tick as a second guard.
--
-- KEYS[1]  last tick key     redisq:{q}:periodic:<name>
-- KEYS[2]  pending list      redisq:{q}:pending
-- KEYS[3]  job record        redisq:{q}:job:<id>
-- KEYS[4]  stats hash        redisq:{q}:stats
-- ARGV[1]  the tick (unix seconds, as text)
-- ARGV[2]  message
-- ARGV[3]  task name
-- ARGV[4]  queue name
-- ARGV[5]  enqueue time (unix seconds, as text)
-- returns  1 if queued, 0 if this tick (or a later one) was already fired
local last = redis.call('GET', KEYS[1])
if last and tonumber(last) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('HSET', KEYS[3], 'status', 'queued', 'task', ARGV[3], 'queue', ARGV[4],
  'message', ARGV[2], 'attempts', '0', 'enqueued_at', ARGV[5])
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[4], 'enqueued', 1)
return 1
