-- wf_defer: create a job that waits on others (depends_on): its record says "deferred" and its
-- message is held aside (not in any queue) until every parent has succeeded.
--
-- KEYS[1]  job record        redisq:{q}:job:<id>
-- KEYS[2]  held message      redisq:{q}:wf:held:<id>
-- KEYS[3]  waited parents    redisq:{q}:wf:wait:<id>
-- ARGV[1]  message
-- ARGV[2]  task name
-- ARGV[3]  enqueue time (unix seconds, as text)
-- ARGV[4..] the parents, each "<queue>|<job id>"
-- returns  1 when created, 0 when a job with this id exists already (nothing written)
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'status', 'deferred', 'task', ARGV[2], 'enqueued_at', ARGV[3])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
redis.call('SADD', KEYS[3], unpack(ARGV, 4))
return 1
