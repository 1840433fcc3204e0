#!lua flags=allow-oom
-- start: mark a batch of reserved jobs as started, and say which must not run. (Messages
-- reserved in a batch are marked by reserve.lua; this serves those taken by a blocking move,
-- before they run.)
--
-- A blocking move is a plain BLMOVE, which cannot check anything: a worker frozen past its
-- lease may find, when it wakes, the reply of a move the server made while it was stopped, for
-- a message that recovery has since given to another worker (which may have finished it). The
-- epoch token the worker held when it sent the move is checked here: if recovery ended that
-- epoch, nothing is marked and the worker runs none of them.
--
-- KEYS[1]   epochs hash                  redisq:{q}:epochs
-- KEYS[2]   done index                   redisq:{q}:done   (the job records were KEYS[1+i]
--           before the done buckets: a variadic list cannot be appended to)
-- KEYS[2+i] job record of job i          redisq:{q}:job:<id>
-- ARGV[1]   worker id
-- ARGV[2]   start time (unix seconds, as text)
-- ARGV[3]   consumer id
-- ARGV[4]   the consumer's epoch token when the messages were moved ('' = not checked)
-- ARGV[4+i] attempt number of job i
-- ARGV[4+n+i] job id of job i (n jobs; to look for it in the done buckets)
-- returns   -1 when the token is not the consumer's epoch any more (nothing marked); else for
--           each job, its status before this call ('' if it had no record). A job already
--           'succeeded', 'failed', 'dead', 'cancelled', 'aborted' or 'expired' is left untouched: the
--           worker settles its message without running it (a duplicate delivery, or a cancel).
--           A job without a record whose finished record is in a done bucket counts as
--           finished too.
if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], ARGV[3]) ~= ARGV[4] then return -1 end

-- [done buckets] The status of job `id`'s finished record packed in a done bucket, or ''
-- (asked only for a job without a record: the hot path pays nothing).
local function done_status(index, id)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for _, e in ipairs(redis.call('ZRANGEBYSCORE', index, string.format('(%d', now), '+inf')) do
    local done = redis.call('HGET', index .. ':' .. e, id)
    if done then  -- the packed record's second field is its status code (finished.CODES)
      return string.match(done, '^[^\31]*\31c') and 'cancelled' or 'succeeded'
    end
  end
  return ''
end

local out = {}
local n = #KEYS - 2
for i = 3, #KEYS do
  local before = redis.call('HGET', KEYS[i], 'status') or ''
  if before == '' then
    before = done_status(KEYS[2], ARGV[2 + n + i])
  end
  out[i - 2] = before
  if before ~= 'succeeded' and before ~= 'failed' and before ~= 'dead' and before ~= 'cancelled'
      and before ~= 'aborted' and before ~= 'expired' then
    redis.call('HSET', KEYS[i], 'status', 'started', 'started_at', ARGV[2], 'worker', ARGV[1],
      'attempts', ARGV[2 + i])
  end
end
return out
