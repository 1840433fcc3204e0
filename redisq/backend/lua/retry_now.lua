#!lua flags=allow-oom
-- retry_now: run a finished or waiting job again now, keeping its record and history (the
-- dashboard's and `redisq retry`'s "retry now"), in one step.
--
-- KEYS[1]  job record        redisq:{q}:job:<id>
-- KEYS[2]  pending list      redisq:{q}:pending
-- KEYS[3]  delayed zset      redisq:{q}:delayed     (a retrying job's next attempt waits there)
-- KEYS[4]  dead list         redisq:{q}:dead
-- KEYS[5]  status index of the job's status now  redisq:{q}:idx:<status>
-- ARGV[1]  the status the caller saw (nothing is done if it changed since)
-- ARGV[2]  the message to queue
-- ARGV[3]  the delayed member to take out ('' = none), or the dead-letter entry ('' = none)
-- ARGV[4]  job id
-- ARGV[5]  history line to append (JSON, one line)
-- returns  1 if queued, 0 if the job changed meanwhile (or its message was taken)
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return 0 end
if ARGV[3] ~= '' then
  local taken
  if ARGV[1] == 'retrying' then taken = redis.call('ZREM', KEYS[3], ARGV[3])
  else taken = redis.call('LREM', KEYS[4], 1, ARGV[3]) end
  if taken == 0 then return 0 end
end
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[5], ARGV[4])
local history = redis.call('HGET', KEYS[1], 'history') or ''
redis.call('HSET', KEYS[1], 'status', 'queued', 'history', history .. ARGV[5] .. '\n')
redis.call('HDEL', KEYS[1], 'next_attempt_at')
redis.call('PERSIST', KEYS[1])
return 1
