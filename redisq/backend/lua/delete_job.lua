#!lua flags=allow-oom
-- delete_job: forget a job that is not running: its record, its waiting message (pending,
-- delayed or dead-lettered) and its place in every status index, in one step.
--
-- KEYS[1]  job record        redisq:{q}:job:<id>
-- KEYS[2]  pending list      redisq:{q}:pending
-- KEYS[3]  delayed zset      redisq:{q}:delayed
-- KEYS[4]  dead list         redisq:{q}:dead
-- KEYS[5..] the queue's status indexes   redisq:{q}:idx:<status>
-- ARGV[1]  job id
-- ARGV[2]  its message in the pending list or the delayed set ('' = none found)
-- ARGV[3]  its dead-letter entry ('' = none found)
-- returns  1 if deleted, 0 if there was nothing to delete, -1 if the job is running
if redis.call('HGET', KEYS[1], 'status') == 'started' then return -1 end
local n = redis.call('DEL', KEYS[1])
if ARGV[2] ~= '' then
  n = n + redis.call('LREM', KEYS[2], 1, ARGV[2]) + redis.call('ZREM', KEYS[3], ARGV[2])
end
if ARGV[3] ~= '' then n = n + redis.call('LREM', KEYS[4], 1, ARGV[3]) end
for i = 5, #KEYS do n = n + redis.call('ZREM', KEYS[i], ARGV[1]) end
if n > 0 then return 1 end
return 0
