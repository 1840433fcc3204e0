-- enqueue_many: create the records of many new jobs of one task and queue their messages, in
-- one step (bulk sends: ``task.map``). Ids are fresh, so no duplicate check is needed.
--
-- KEYS[1]    pending list    redisq:{q}:pending
-- KEYS[2]    stats hash      redisq:{q}:stats
-- KEYS[2+i]  job record of job i
-- ARGV[1]    task name
-- ARGV[1+i]  message of job i
-- returns    number of jobs queued
--
-- The record holds status, task and message only: the queue is in its key, the enqueue time
-- in the message and attempts start at none, and Records.get fills those in when reading.
-- Half the fields make the HSET a third cheaper, which is most of a bulk enqueue's cost.
local n = #KEYS - 2
for i = 1, n do
  redis.call('HSET', KEYS[2 + i], 'status', 'queued', 'task', ARGV[1], 'message', ARGV[1 + i])
end
-- One variadic LPUSH (same order as one by one): a chunk is at most a few hundred messages,
-- far below Lua's unpack limit.
if n > 0 then redis.call('LPUSH', KEYS[1], unpack(ARGV, 2, 1 + n)) end
redis.call('HINCRBY', KEYS[2], 'enqueued', n)
return n
