#!lua flags=allow-oom
-- wf_resolve: one parent of a deferred job is over. Idempotent (the parent leaves the job's
-- waited set once): a sweep repeated after a lost worker counts nothing twice. A parent that
-- did not succeed cancels the job, with the reason recorded; the last parent to succeed
-- queues the held message.
--
-- KEYS[1]  job record        redisq:{q}:job:<id>
-- KEYS[2]  held message      redisq:{q}:wf:held:<id>
-- KEYS[3]  waited parents    redisq:{q}:wf:wait:<id>
-- KEYS[4]  pending list      redisq:{q}:pending
-- KEYS[5]  stats hash        redisq:{q}:stats
-- ARGV[1]  the parent, "<queue>|<job id>"
-- ARGV[2]  the parent's final status (or 'missing')
-- ARGV[3]  now (unix seconds, as text)
-- ARGV[4]  TTL in ms of a cancelled record
-- returns  0 nothing to do (counted before, or the job is not deferred any more);
--          1 counted, other parents remain; 2 cancelled; 3 queued
if redis.call('HGET', KEYS[1], 'status') ~= 'deferred' then return 0 end
if redis.call('SREM', KEYS[3], ARGV[1]) == 0 then return 0 end
if ARGV[2] ~= 'succeeded' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'error_type', 'DependencyFailed',
    'error_message', 'dependency ' .. ARGV[1] .. (ARGV[2] == 'missing' and ' has no record'
      or (' ended ' .. ARGV[2])), 'finished_at', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HINCRBY', KEYS[5], 'cancelled', 1)
  return 2
end
if redis.call('SCARD', KEYS[3]) > 0 then return 1 end
local message = redis.call('GET', KEYS[2])
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('LPUSH', KEYS[4], message)
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HINCRBY', KEYS[5], 'enqueued', 1)
return 3
