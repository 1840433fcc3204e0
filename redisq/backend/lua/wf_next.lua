#!lua flags=allow-oom
-- wf_next: queue a workflow's next job (a chain's next step) at most once. The worker runs it
-- BEFORE it settles the step that produced the next one's input: a worker lost in between
-- makes that step run again, and its second wf_next finds the marker and queues nothing.
-- allow-oom: part of finishing a job (as settle); the marker is what keeps it idempotent.
--
-- KEYS[1]  marker            redisq:{q}:wf:sent:<job id>
-- KEYS[2]  pending list      redisq:{q}:pending
-- KEYS[3]  job record        redisq:{q}:job:<job id>
-- KEYS[4]  stats hash        redisq:{q}:stats
-- ARGV[1]  message
-- ARGV[2]  task name
-- ARGV[3]  enqueue time (unix seconds, as text)
-- ARGV[4]  marker TTL in ms (longer than any re-run of the previous step can come)
-- returns  1 when queued, 0 when it was queued before, -1 when it was cancelled meanwhile
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[4]) then return 0 end
-- A step cancelled while it waited (Job.cancel of a deferred job) is not queued.
if redis.call('HGET', KEYS[3], 'status') == 'cancelled' then return -1 end
redis.call('HSET', KEYS[3], 'status', 'queued', 'task', ARGV[2], 'enqueued_at', ARGV[3])
redis.call('PERSIST', KEYS[3])
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[4], 'enqueued', 1)
return 1
