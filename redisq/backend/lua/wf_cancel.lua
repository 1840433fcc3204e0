#!lua flags=allow-oom
-- wf_cancel: end a deferred job that will never run (its chain stopped before it), with why.
--
-- KEYS[1]  job record        redisq:{q}:job:<id>
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
return 1
