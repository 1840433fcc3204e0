#!lua flags=allow-oom
-- wf_member: record one group member's final outcome and, with the last one, fire the group:
-- queue its callback (exactly once) or record why it will not run. The worker runs this step
-- BEFORE it settles (acks) the member's message, so a worker lost in between only makes the
-- member run again; the first outcome recorded for a member stands (HSETNX), and the "fired"
-- flag is set in the same step that queues the callback, so neither a re-run, nor two members
-- ending at the same instant on two workers, can count twice or fire twice. allow-oom: like
-- settle, this step is part of finishing a job, which is what frees memory.
--
-- KEYS[1]  group state       redisq:{q}:wf:group:<id>
-- KEYS[2]  member outcomes   redisq:{q}:wf:group:<id>:results
-- KEYS[3]  active groups     redisq:{q}:wf:active
-- KEYS[4]  callback pending  redisq:{q}:pending       (KEYS[4..6] only with a callback)
-- KEYS[5]  callback record   redisq:{q}:job:<callback id>
-- KEYS[6]  callback stats    redisq:{q}:stats
-- ARGV[1]  group id
-- ARGV[2]  member index (0-based)
-- ARGV[3]  outcome: 's' .. result JSON, or 'f' .. error JSON object
-- ARGV[4]  now (unix seconds, as text)
-- ARGV[5]  TTL in ms of a callback record that will not run (policy "fail")
-- returns  -1 the group's state is gone (expired, or never created): nothing written;
--          -2 the index is not one of the group's members (a forged message): nothing written;
--          0 this member was recorded already (a re-run); 1 recorded;
--          2 recorded, and it completed the group (the callback is queued, or failed)
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local state = redis.call('HMGET', KEYS[1], 'total', 'policy', 'callback', 'pre', 'post')
local total = tonumber(state[1])
local index = tonumber(ARGV[2])
if not index or index < 0 or index >= total or index % 1 ~= 0 then return -2 end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
if redis.call('HLEN', KEYS[2]) < total then return 1 end
if redis.call('HSETNX', KEYS[1], 'fired', ARGV[4]) == 0 then return 1 end
redis.call('ZREM', KEYS[3], ARGV[1])
-- The outcomes in member order; failed ones counted (and kept in place under policy "run").
local all = redis.call('HGETALL', KEYS[2])
local by_index = {}
for i = 1, #all, 2 do by_index[tonumber(all[i]) + 1] = all[i + 1] end
local parts, failed, first_failed = {}, 0, -1
for i = 1, total do
  local v = by_index[i]
  if string.sub(v, 1, 1) == 's' then
    parts[#parts + 1] = string.sub(v, 2)
  else
    failed = failed + 1
    if first_failed < 0 then first_failed = i - 1 end
    if state[2] == 'run' then parts[#parts + 1] = string.sub(v, 2) end
  end
end
redis.call('HSET', KEYS[1], 'failed', failed)
if not KEYS[4] or state[3] == '' then return 2 end
if failed > 0 and state[2] == 'fail'
    and redis.call('HGET', KEYS[5], 'status') == 'deferred' then
  redis.call('HSET', KEYS[5], 'status', 'failed', 'error_type', 'GroupFailed',
    'error_message', failed .. ' of ' .. total .. ' group members failed (the first: member '
      .. first_failed .. ')', 'finished_at', ARGV[4])
  redis.call('PEXPIRE', KEYS[5], ARGV[5])
  return 2
end
if redis.call('HGET', KEYS[5], 'status') ~= 'deferred' then return 2 end  -- cancelled meanwhile
redis.call('LPUSH', KEYS[4], state[4] .. '[' .. table.concat(parts, ',') .. ']' .. state[5])
redis.call('HSET', KEYS[5], 'status', 'queued')
redis.call('PERSIST', KEYS[5])
redis.call('HINCRBY', KEYS[6], 'enqueued', 1)
return 2
