-- enqueue_many: create the records of many new jobs of one task and queue their messages, in
-- one step (bulk sends: ``task.map``). Ids are fresh, so no duplicate check is needed.
--
-- KEYS[1]    pending list    redisq:{q}:pending
-- KEYS[2]    stats hash      redisq:{q}:stats
-- KEYS[2+i]  job record of job i
-- ARGV[1]    task name
-- ARGV[2]    enqueue time (unix seconds, as text)
-- ARGV[2+i]  message of job i
-- ARGV[2+n+i] (optional, all or none) job i's headers as JSON, copied into its record ('' none)
-- returns    number of jobs queued
--
-- The record holds status, task and enqueue time only: the message lives in the queue, the
-- queue is in the record's key and attempts start at none (Records.get fills those in).
local n = #KEYS - 2
local headers = #ARGV >= 2 + 2 * n
for i = 1, n do
  redis.call('HSET', KEYS[2 + i], 'status', 'queued', 'task', ARGV[1], 'enqueued_at', ARGV[2])
  if headers and ARGV[2 + n + i] ~= '' then
    redis.call('HSET', KEYS[2 + i], 'headers', ARGV[2 + n + i])
  end
end
-- One variadic LPUSH (same order as one by one): a chunk is at most a few hundred messages,
-- far below Lua's unpack limit.
if n > 0 then redis.call('LPUSH', KEYS[1], unpack(ARGV, 3, 2 + n)) end
redis.call('HINCRBY', KEYS[2], 'enqueued', n)
return n
