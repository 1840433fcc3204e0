#!lua flags=allow-oom
-- start: mark a batch of reserved jobs as started, and say which must not run. (Messages
-- reserved in a batch are marked by reserve.lua; this serves those taken by a blocking move.)
--
-- KEYS[i]   job record of job i          redisq:{q}:job:<id>
-- ARGV[1]   worker id
-- ARGV[2]   start time (unix seconds, as text)
-- ARGV[2+i] attempt number of job i
-- returns   for each job, its status before this call ('' if it had no record). A job already
--           'succeeded', 'failed', 'dead' or 'cancelled' is left untouched: the worker settles
--           its message without running it (a duplicate delivery, or a cancel).
local out = {}
for i = 1, #KEYS do
  local before = redis.call('HGET', KEYS[i], 'status') or ''
  out[i] = before
  if before ~= 'succeeded' and before ~= 'failed' and before ~= 'dead' and before ~= 'cancelled' then
    redis.call('HSET', KEYS[i], 'status', 'started', 'started_at', ARGV[2], 'worker', ARGV[1],
      'attempts', ARGV[2 + i])
  end
end
return out
