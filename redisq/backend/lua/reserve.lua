#!lua flags=allow-oom
-- reserve: move up to N messages from a queue's pending list to one consumer's processing list.
-- The move is the reservation: a message never exists only in a reply on the wire, so a lost
-- reply or a dead consumer can delay a message but never lose it.
--
-- With a record prefix (jobs), each moved message's job record is also marked started in the
-- same step, which saves the worker a round trip per batch. The record key is built here from
-- the prefix and the id inside the message because it is only known after the move; the prefix
-- carries the queue's hash tag, so the key is in the same Cluster slot as KEYS[1].
--
-- KEYS[1]  pending list      redisq:{q}:pending
-- KEYS[2]  processing list   redisq:{q}:processing:<consumer>
-- KEYS[3]  lease key         redisq:{q}:lease:<consumer>
-- KEYS[4]  consumers set     redisq:{q}:consumers
-- KEYS[5]  epochs hash       redisq:{q}:epochs    (with a prefix)
-- KEYS[6]  done index        redisq:{q}:done      (with a prefix: where finished records are)
-- ARGV[1]  N: most messages to move (integer >= 1)
-- ARGV[2]  consumer id
-- ARGV[3]  lease length in milliseconds, or 0 when the caller's heartbeat keeps the lease
--          (a worker's hot path: two fewer writes per job)
-- ARGV[4]  job record prefix redisq:{q}:job:  ('' = plain messages, no records)
-- ARGV[5]  worker id         (with a prefix)
-- ARGV[6]  start time, unix seconds as text (with a prefix)
-- ARGV[7]  the consumer's epoch token (with a prefix; see renew.lua; '' = not checked)
--
-- Claim mode (a worker's idle path): KEYS[1] is the consumer's inbox, which a BLMOVE sent in
-- the same pipeline has just filled; this step runs right behind it on the server, so a job
-- taken by a blocking wait is marked (and fenced) without a round trip of its own. Then:
-- KEYS[7]  paused set        redisq:paused   (a queue paused while the wait was out: the
--                                             message goes back, unmarked)
-- KEYS[8]  pending list      redisq:{q}:pending   (where it goes back to, at the front)
-- ARGV[8]  the queue's name  (to look up in the paused set)
-- and ARGV[6] may be '' (the server's clock is the start time: the wait may have been long).
-- returns  -1, moving nothing, when the token is not the consumer's epoch any more (its
--          messages were recovered after its lease expired: it must register again);
--          without a prefix: the moved messages, oldest first (may be empty);
--          with a prefix: message, status-before pairs, flattened. A status before of
--          'succeeded', 'failed', 'dead', 'cancelled', 'aborted' or 'expired' leaves the record untouched
--          (the job must not run again: a duplicate delivery, or a cancel; a job without a
--          record whose finished record is in a done bucket counts as finished too); '' means
--          no record, '?' a message that is not a job (left for the worker to dead-letter).
if ARGV[3] ~= '0' then
  redis.call('SADD', KEYS[4], ARGV[2])
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
end
local prefix = ARGV[4] or ''
-- Claim mode: what the wait brought goes back to the front of the queue, untouched, when our
-- epoch ended (recovery ran while the wait was out) or the queue was paused meanwhile.
local function give_back()
  while redis.call('LMOVE', KEYS[1], KEYS[8], 'RIGHT', 'RIGHT') do end
end
if prefix ~= '' and (ARGV[7] or '') ~= '' and redis.call('HGET', KEYS[5], ARGV[2]) ~= ARGV[7] then
  if KEYS[8] then give_back() end
  return -1
end
if KEYS[8] and redis.call('SISMEMBER', KEYS[7], ARGV[8]) == 1 then
  give_back()
  return {}
end
local started = ARGV[6] or ''
if prefix ~= '' and started == '' then
  local t = redis.call('TIME')
  started = string.format('%d.%03d', t[1], math.floor(tonumber(t[2]) / 1000))
end

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
for i = 1, tonumber(ARGV[1]) do
  local msg = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not msg then break end
  if prefix == '' then
    out[#out + 1] = msg
  else
    -- redisq writes "id" first and "attempt" as a plain integer, so a pattern finds them
    -- without decoding the whole message; anything else goes through cjson. (No unanchored
    -- search without an id: on a huge poison message it costs ~20 ns per byte.)
    local id = string.match(msg, '^{"id":"([^"]+)"')
    local attempt = id and string.match(msg, '"attempt":(%d+)')
    if not id then
      local ok, job = pcall(cjson.decode, msg)
      if ok and type(job) == 'table' and type(job.id) == 'string' then
        id, attempt = job.id, tostring(job.attempt or 1)
      end
    end
    local before = '?'
    if id then
      local record = prefix .. id
      before = redis.call('HGET', record, 'status') or ''
      if before == '' and KEYS[6] then before = done_status(KEYS[6], id) end
      if before ~= 'succeeded' and before ~= 'failed' and before ~= 'dead'
          and before ~= 'cancelled' and before ~= 'aborted'
          and before ~= 'expired' then
        -- Only finished records carry a TTL, and those are skipped: no PERSIST needed.
        redis.call('HSET', record, 'status', 'started', 'started_at', started,
          'worker', ARGV[5], 'attempts', attempt or '1')
      end
    end
    out[#out + 1] = msg
    out[#out + 1] = before
  end
end
return out
