-- requeue_dead: bring one dead-lettered job back to its queue, exactly once.
--
-- KEYS[1]  dead list         redisq:{q}:dead
-- KEYS[2]  pending list      redisq:{q}:pending
-- KEYS[3]  job record        redisq:{q}:job:<id>
-- KEYS[4]  stats hash        redisq:{q}:stats
-- ARGV[1]  the dead-letter entry, exactly as stored
-- ARGV[2]  the message to queue (attempt counter reset)
-- returns  1 if requeued, 0 if the entry was no longer there
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
-- The message lives in the queue only (cancel() finds it there), not in the record.
redis.call('HSET', KEYS[3], 'status', 'queued', 'attempts', '0')
redis.call('PERSIST', KEYS[3])
redis.call('HINCRBY', KEYS[4], 'requeued', 1)
return 1
