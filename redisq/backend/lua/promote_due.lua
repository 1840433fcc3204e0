-- promote_due: move delayed messages whose time has come to the back of their queue.
-- ZREM decides who moves a message, so each one is moved exactly once however many workers and
-- schedulers call this at the same moment.
--
-- KEYS[1]  delayed zset      redisq:{q}:delayed
-- KEYS[2]  pending list      redisq:{q}:pending
-- ARGV[1]  most messages to move in this call
-- returns  number of messages moved
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local moved = 0
for _, msg in ipairs(due) do
  if redis.call('ZREM', KEYS[1], msg) == 1 then
    redis.call('LPUSH', KEYS[2], msg)
    moved = moved + 1
  end
end
return moved
