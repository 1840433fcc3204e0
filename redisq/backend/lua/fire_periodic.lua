-- fire_periodic: queue one tick of a periodic job, exactly once.
-- The "last fired tick" mark lives under the queue's hash tag, beside the job it queues, so
-- this is one step in one Cluster slot. The mark only moves forward: two schedulers that both
-- believe they lead (a lease handover, a paused leader) can never fire a tick twice, and the
-- job id derived from the tick is a second guard (an existing record refuses it).
--
-- KEYS[1]  last tick mark    redisq:{q}:periodic:<name>
-- KEYS[2]  pending list      redisq:{q}:pending
-- KEYS[3]  job record        redisq:{q}:job:periodic:<name>:<tick>
-- KEYS[4]  stats hash        redisq:{q}:stats
-- KEYS[5]  unique key        redisq:{q}:unique:<key>   (only when the task is unique)
-- ARGV[1]  the tick (unix seconds, as text)
-- ARGV[2]  message; empty: skip the tick (misfire policy), i.e. only move the mark
-- ARGV[3]  task name
-- ARGV[4]  queue name (unused: the record's key names it)
-- ARGV[5]  enqueue time (unix seconds, as text)
-- ARGV[6]  unique key lease in ms (when KEYS[5] is given)
-- ARGV[7]  job id (the unique key's value)
-- ARGV[8]  job record prefix redisq:{q}:job:  (to look up the unique key's holder; same slot)
-- ARGV[9]  done index redisq:{q}:done  (a finished tick's record may be in a done bucket,
--          redisq:{q}:done:<end ms>; same slot)
-- returns  1 queued; 0 this tick (or a later one) was already fired; 2 the tick is spent
--          without a job (skipped, or the task's unique key is held by a queued or running
--          job)
local last = redis.call('GET', KEYS[1])
if last and tonumber(last) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[2] == '' then return 2 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
-- [done buckets] the tick's job already finished, its record packed in a live done bucket
local done = ARGV[9] or ''
if done ~= '' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for _, e in ipairs(redis.call('ZRANGEBYSCORE', done, string.format('(%d', now), '+inf')) do
    if redis.call('HEXISTS', done .. ':' .. e, ARGV[7]) == 1 then return 0 end
  end
end
if KEYS[5] then
  if not redis.call('SET', KEYS[5], ARGV[7], 'NX', 'PX', ARGV[6]) then
    local held = redis.call('HGET', ARGV[8] .. redis.call('GET', KEYS[5]), 'status')
    if held == 'queued' or held == 'started' or held == 'retrying' then
      return 2
    end
    -- The holder is over (or its record is gone) but the key outlived it: take it over, as
    -- enqueue does, instead of skipping ticks until its lease runs out.
    redis.call('SET', KEYS[5], ARGV[7], 'PX', ARGV[6])
  end
end
redis.call('HSET', KEYS[3], 'status', 'queued', 'task', ARGV[3], 'enqueued_at', ARGV[5])
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[4], 'enqueued', 1)
return 1
