#!lua flags=allow-oom
-- settle: record how a job's attempt ended and move its message accordingly, in one step.
--
-- KEYS[1]  processing list   redisq:{q}:processing:<consumer>
-- KEYS[2]  job record        redisq:{q}:job:<id>
-- KEYS[3]  stats hash        redisq:{q}:stats
-- KEYS[4]  delayed zset      redisq:{q}:delayed   (where a retry waits)
-- KEYS[5]  dead list         redisq:{q}:dead      (where a dead job's entry goes)
-- KEYS[6]  epochs hash       redisq:{q}:epochs
-- KEYS[7]  done index        redisq:{q}:done   (its buckets: redisq:{q}:done:<end ms>)
-- KEYS[8]  unique key        redisq:{q}:unique:<key>   (a job without one: a placeholder,
--          redisq:{q}:unique: , never read: see ARGV[n-5]; it was KEYS[7] before the done
--          buckets)
-- KEYS[9]  status index      redisq:{q}:idx:<outcome>     (job index block, below)
-- KEYS[10] retrying index    redisq:{q}:idx:retrying
-- KEYS[11] series string     redisq:{q}:series:<minute>   (u32 counters: see jobindex.py)
-- KEYS[12] pending list      redisq:{q}:pending
-- ARGV[1]  outcome: succeeded | failed | retrying | dead | cancelled | expired
-- ARGV[2]  the message as reserved (removed from the processing list)
-- ARGV[3]  retrying: the next attempt's message; dead: the dead-letter entry; else ''
-- ARGV[4]  retrying: delay in ms before the next attempt
-- ARGV[5]  record TTL in ms (0 = keep)
-- ARGV[6]  job id (the unique key is released only if it still names this job)
-- ARGV[7]  most entries the dead list keeps (0 = unbounded)
-- ARGV[8]  event channel ('' = publish nothing)
-- ARGV[9]  event payload
-- ARGV[10] duration histogram field of the stats hash ('' = do not count), e.g. 'dur:0.05'
-- ARGV[11] the attempt's duration in seconds
-- ARGV[12] consumer id
-- ARGV[13] the consumer's epoch token when the message was reserved ('' = not checked)
-- ARGV[14] worker id
-- ARGV[15] the attempt's number
-- ARGV[16] done bucket width in ms; '0' = the record stays a key (see done buckets below)
-- ARGV[17] with a width: the packed record (redisq/backend/finished.py), starting with the
--          separator (this step puts the progress message in front)
-- ARGV[18..n-6] record field, value pairs (without a width; they were ARGV[16..] before)
-- ARGV[n-5] '1' when the job holds a unique key (KEYS[8] is real), else '0'
-- ARGV[n-4] settle time (unix ms)                          (job index block, below)
-- ARGV[n-3] most ids a status index keeps (0 = keep no index and no series); once over it,
--           an index is trimmed a hundredth below it, so most settles trim nothing
-- ARGV[n-2] the second within the minute (0..59) of the settle time
-- ARGV[n-1] the latency bucket (0..12) of a sampled first attempt's enqueue -> start, or ''
-- ARGV[n]   series TTL in seconds on the worker's first settle of the queue in a second (it
--           also samples the depth then), else ''
-- returns  1 if the message was still held by this consumer, 0 if not (a settle repeated
--          after a lost reply: the record is written again, the message is not moved);
--          -1 when the token is not the consumer's epoch any more: the message was recovered
--          after the consumer's lease expired and given to another worker, whose outcome
--          stands; nothing is written or moved;
--          -2 when another worker already finished the job (its record in its key or in a
--          done bucket), or failed this attempt and scheduled the next (a duplicate
--          delivery): its record is kept, and this copy of the message is only removed
local outcome = ARGV[1]
if ARGV[13] ~= '' and redis.call('HGET', KEYS[6], ARGV[12]) ~= ARGV[13] then return -1 end
-- A finished record written by another worker is never overwritten; nor is its retry of this
-- attempt (or an earlier one), except by a success (the job is done: the waiting retry is
-- skipped when it comes up, as a finished job's duplicate).
local rec = redis.call('HMGET', KEYS[2], 'status', 'worker', 'attempts', 'progress_message')
local st = rec[1]
-- [done buckets] A missing record may be finished and packed in a done bucket (looked for
-- only then: the hot path pays nothing). Another worker's outcome: a duplicate, as below;
-- this worker's own: a settle repeated after a lost reply, already written.
if not st then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for _, e in ipairs(redis.call('ZRANGEBYSCORE', KEYS[7], string.format('(%d', now), '+inf')) do
    local bucket = KEYS[7] .. ':' .. e
    local done = redis.call('HGET', bucket, ARGV[6])
    if done then
      local held = redis.call('LREM', KEYS[1], -1, ARGV[2])
      -- the packed record's eighth field (finished.pack): the code of its worker's name
      local worker = string.match(done, '^' .. string.rep('[^\31]*\31', 7) .. '([^\31]*)')
      if worker ~= redis.call('HGET', bucket, '\1=' .. ARGV[14]) then return -2 end
      return held
    end
  end
end
if rec[2] and rec[2] ~= ARGV[14] and (st == 'succeeded' or st == 'failed' or st == 'dead'
    or st == 'cancelled' or st == 'aborted' or st == 'expired' or (st == 'retrying' and outcome ~= 'succeeded'
      and tonumber(ARGV[15]) <= (tonumber(rec[3]) or 0))) then
  redis.call('LREM', KEYS[1], -1, ARGV[2])
  return -2
end
local held = redis.call('LREM', KEYS[1], -1, ARGV[2])
if held == 1 then
  if outcome == 'retrying' then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), ARGV[3])
  elseif outcome == 'dead' then
    redis.call('LPUSH', KEYS[5], ARGV[3])
    local cap = tonumber(ARGV[7])
    if cap > 0 then redis.call('LTRIM', KEYS[5], 0, cap - 1) end
  end
  redis.call('HINCRBY', KEYS[3], outcome, 1)
  if ARGV[10] ~= '' then
    redis.call('HINCRBY', KEYS[3], ARGV[10], 1)
    redis.call('HINCRBYFLOAT', KEYS[3], 'dur:sum', ARGV[11])
  end
end
local n = #ARGV
local ttl = tonumber(ARGV[5])
local width = tonumber(ARGV[16])
if width > 0 and ttl > 0 then
  -- [done buckets] The finished record becomes one field of the bucket that ends at its
  -- expiry rounded up to a multiple of the width (finished.bucket_end_ms), and its key goes.
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local e = string.format('%d', math.ceil((now + ttl) / width) * width)
  local bucket = KEYS[7] .. ':' .. e
  -- The task's and the worker's names are kept once per bucket ('\1=' name -> code and
  -- '\1#' code -> name; record.lua puts them back): the record holds their codes.
  local function code(name)
    local c = redis.call('HGET', bucket, '\1=' .. name)
    if not c then
      c = tostring(redis.call('HINCRBY', bucket, '\1n', 1))
      redis.call('HSET', bucket, '\1=' .. name, c, '\1#' .. c, name)
    end
    return c
  end
  local head, task, middle, worker, tail = string.match(ARGV[17],
    '^(\31[^\31]*\31)([^\31]*)(\31[^\31]*\31[^\31]*\31[^\31]*\31[^\31]*\31)([^\31]*)(.*)$')
  redis.call('HSET', bucket, ARGV[6], (string.gsub(rec[4] or '', '\31', ' ')) .. head
    .. code(task) .. middle .. code(worker) .. tail)
  redis.call('PEXPIREAT', bucket, e)
  if redis.call('ZADD', KEYS[7], e, e) == 1 then  -- a new bucket: prune, and keep the index
    redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)  -- as long as its last bucket
    redis.call('PEXPIREAT', KEYS[7], redis.call('ZRANGE', KEYS[7], -1, -1, 'WITHSCORES')[2])
  end
  redis.call('DEL', KEYS[2])
else
  if n - 6 >= 18 then redis.call('HSET', KEYS[2], unpack(ARGV, 18, n - 6)) end
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
if ARGV[n - 5] == '1' and outcome ~= 'retrying' and redis.call('GET', KEYS[8]) == ARGV[6] then
  redis.call('DEL', KEYS[8])
end
-- Job index block (issue 16): the job joins its outcome's index (leaving the retrying one
-- once a later attempt settles), trimmed in this same step so no index outgrows its cap; the
-- attempt counts in the minute's per-second counters (one BITFIELD: u32 #s processed,
-- #60+s failed, #120 depth, #121+b latency histogram; see jobindex.py).
-- An index also keeps no id longer than the record it points to: ids older than this record's
-- TTL go, and the index expires with the last of them (an idle queue's index does not outlive
-- its records).
local cap = tonumber(ARGV[n - 3])
if cap > 0 then
  redis.call('ZADD', KEYS[9], ARGV[n - 4], ARGV[6])
  if redis.call('ZCARD', KEYS[9]) > cap then
    redis.call('ZREMRANGEBYRANK', KEYS[9], 0, -(cap - math.floor(cap / 100)) - 1)
  end
  if ttl > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[9], '-inf', '(' .. (tonumber(ARGV[n - 4]) - ttl))
    redis.call('PEXPIRE', KEYS[9], ttl)
  else
    redis.call('PERSIST', KEYS[9])
  end
  if outcome ~= 'retrying' and tonumber(ARGV[15]) > 1 then redis.call('ZREM', KEYS[10], ARGV[6]) end
  if held == 1 then
    local sec = tonumber(ARGV[n - 2])
    if outcome == 'succeeded' or outcome == 'cancelled' then
      redis.call('BITFIELD', KEYS[11], 'INCRBY', 'u32', '#' .. sec, 1)
    else
      redis.call('BITFIELD', KEYS[11], 'INCRBY', 'u32', '#' .. sec, 1, 'INCRBY', 'u32', '#' .. (60 + sec), 1)
    end
    if ARGV[n - 1] ~= '' then
      redis.call('BITFIELD', KEYS[11], 'INCRBY', 'u32', '#' .. (121 + tonumber(ARGV[n - 1])), 1)
    end
    if ARGV[n] ~= '' then
      redis.call('BITFIELD', KEYS[11], 'SET', 'u32', '#120', redis.call('LLEN', KEYS[12]))
      redis.call('EXPIRE', KEYS[11], ARGV[n])
    end
  end
end
if ARGV[8] ~= '' then redis.call('PUBLISH', ARGV[8], ARGV[9]) end
return held
