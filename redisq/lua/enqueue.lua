-- enqueue: create a job record and queue its message (now or later) in one step, refusing a
-- second job while one with the same unique key, or the same job id, is queued or running.
--
-- KEYS[1]  pending list      redisq:{q}:pending
-- KEYS[2]  delayed zset      redisq:{q}:delayed
-- KEYS[3]  job record        redisq:{q}:job:<id>
-- KEYS[4]  stats hash        redisq:{q}:stats
-- KEYS[5]  unique key        redisq:{q}:unique:<key>   (only when the task is unique)
-- ARGV[1]  message
-- ARGV[2]  job id
-- ARGV[3]  delay in ms; < 0 means queue now
-- ARGV[4]  unique key lease in ms (a safety net: the worker deletes the key when the job ends)
-- ARGV[5]  task name
-- ARGV[6]  queue name
-- ARGV[7]  enqueue time (unix seconds, as text)
-- returns  { 1, id } when queued, { 0, existing id } when a duplicate was refused
local status = redis.call('HGET', KEYS[3], 'status')
if status == 'queued' or status == 'started' or status == 'retrying' then
  return { 0, ARGV[2] }
end
if KEYS[5] then
  if not redis.call('SET', KEYS[5], ARGV[2], 'NX', 'PX', ARGV[4]) then
    return { 0, redis.call('GET', KEYS[5]) }
  end
end
if status then redis.call('DEL', KEYS[3]) end  -- a finished job's id reused: start afresh
redis.call('HSET', KEYS[3], 'status', 'queued', 'task', ARGV[5], 'queue', ARGV[6],
  'message', ARGV[1], 'attempts', '0', 'enqueued_at', ARGV[7])
local delay = tonumber(ARGV[3])
if delay < 0 then
  redis.call('LPUSH', KEYS[1], ARGV[1])
else
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[2], now + delay, ARGV[1])
  redis.call('HSET', KEYS[3], 'due_at', string.format('%.3f', (now + delay) / 1000))
end
redis.call('HINCRBY', KEYS[4], 'enqueued', 1)
return { 1, ARGV[2] }
