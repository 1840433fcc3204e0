#!lua flags=allow-oom
-- delete_job: forget a job that is not running: its record (its own key, or its packed field
-- in the done buckets once it succeeded), its waiting message (pending, delayed or
-- dead-lettered) and its place in every status index, in one step.
--
-- KEYS[1]  job record        redisq:{q}:job:<id>
-- KEYS[2]  pending list      redisq:{q}:pending
-- KEYS[3]  delayed zset      redisq:{q}:delayed
-- KEYS[4]  dead list         redisq:{q}:dead
-- KEYS[5]  done index        redisq:{q}:done   (its buckets: redisq:{q}:done:<end ms>, in the
--          same slot)
-- KEYS[6..] the queue's status indexes   redisq:{q}:idx:<status>
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
if n == 0 then  -- no key: a finished record may be a field of live done buckets
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for _, e in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], string.format('(%d', now), '+inf')) do
    n = n + redis.call('HDEL', KEYS[5] .. ':' .. e, ARGV[1])
  end
end
for i = 6, #KEYS do n = n + redis.call('ZREM', KEYS[i], ARGV[1]) end
if n > 0 then return 1 end
return 0
