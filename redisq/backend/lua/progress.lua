-- progress: record how far a running job is, and tell dashboards, in one step.
--
-- Only a job that is still running gets the report: a report that arrives after the job
-- finished (a duplicate run of a worker that woke after its lease expired) must not write
-- into a finished record, nor recreate a record that moved to a done bucket (an HSET would
-- make a key without a TTL that hides the finished record from readers).
--
-- KEYS[1]  job record        redisq:{q}:job:<id>
-- ARGV[1]  fraction done (0..1, as text)
-- ARGV[2]  progress message
-- ARGV[3]  event channel ('' = publish nothing)
-- ARGV[4]  event payload
-- returns  1 if recorded, 0 if the job is not running
if redis.call('HGET', KEYS[1], 'status') ~= 'started' then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[1], 'progress_message', ARGV[2])
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 1
