#!lua flags=allow-oom
-- wf_cancel: end a deferred job that will never run (its chain stopped before it, or
-- Job.cancel()), with why. A chord callback or chain step cancelled here is not queued later
-- (wf_member and wf_next queue only a record still deferred); nor is a depends_on job (its held
-- message goes).
--
-- KEYS[1]  job record        redisq:{q}:job:<id>
-- KEYS[2]  held message      redisq:{q}:wf:held:<id>   (KEYS[2..3] optional: depends_on jobs)
-- KEYS[3]  waited parents    redisq:{q}:wf:wait:<id>
-- ARGV[1]  status to record (cancelled)
-- ARGV[2]  error type
-- ARGV[3]  error message (why)
-- ARGV[4]  now (unix seconds, as text)
-- ARGV[5]  record TTL in ms
-- returns  1 when the record was deferred and is now ended, else 0 (nothing written)
if redis.call('HGET', KEYS[1], 'status') ~= 'deferred' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'error_type', ARGV[2], 'error_message', ARGV[3],
  'finished_at', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if KEYS[2] then redis.call('DEL', KEYS[2], KEYS[3]) end
return 1
