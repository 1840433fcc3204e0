-- cancel: stop a job that has not started; a worker that reserves it later skips it.
--
-- KEYS[1]  job record        redisq:{q}:job:<id>
-- KEYS[2]  unique key        redisq:{q}:unique:<key>   (only when the job holds one)
-- ARGV[1]  job id
-- ARGV[2]  finish time (unix seconds, as text)
-- returns  1 if cancelled, 0 if the job was not queued or retrying
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'retrying' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[2])
if KEYS[2] and redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
