#!lua flags=no-writes,allow-oom
-- record: read one job record wherever it lives, in one step: its own key (a job that waits,
-- runs, failed or died, or one kept whole) or, once finished, a field of a done bucket
-- (redisq/backend/finished.py). Read-only: it runs on replicas and at maxmemory.
--
-- KEYS[1]  job record        redisq:{q}:job:<id>
-- KEYS[2]  done index        redisq:{q}:done   (its buckets: redisq:{q}:done:<end ms>)
-- ARGV[1]  job id
-- returns  { 'h', field, value, ... } the record's hash; { 'd', packed, ... } the packed
--          records of the id in live done buckets, with their task and worker names put back
--          (more than one after a finished job's id was reused: the reader takes the latest
--          finished); {} when there is none
local record = redis.call('HGETALL', KEYS[1])
if #record > 0 then
  table.insert(record, 1, 'h')
  return record
end
local out = {}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, e in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], string.format('(%d', now), '+inf')) do
  local bucket = KEYS[2] .. ':' .. e
  local done = redis.call('HGET', bucket, ARGV[1])
  if done then
    -- The task and the worker are codes of names kept once per bucket (settle.lua).
    local head, task, middle, worker, tail = string.match(done,
      '^([^\31]*\31[^\31]*\31)([^\31]*)(\31[^\31]*\31[^\31]*\31[^\31]*\31[^\31]*\31)([^\31]*)(.*)$')
    if head then
      local names = redis.call('HMGET', bucket, '\1#' .. task, '\1#' .. worker)
      done = head .. (names[1] or task) .. middle .. (names[2] or worker) .. tail
    end
    if #out == 0 then out[1] = 'd' end
    out[#out + 1] = done
  end
end
return out
