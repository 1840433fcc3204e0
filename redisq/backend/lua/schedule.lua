-- schedule: add messages to a queue's delayed set, due delay_ms after the server's clock.
-- Using Redis's TIME (not the producer's clock) keeps hosts with skewed clocks in agreement.
--
-- KEYS[1]  delayed zset      redisq:{q}:delayed
-- ARGV[1]  delay in milliseconds (>= 0), or, with ARGV[2] == "at", an absolute unix time in ms
-- ARGV[2]  "in" or "at"
-- ARGV[3..] messages
-- returns  the due time in unix milliseconds
local due = tonumber(ARGV[1])
if ARGV[2] == 'in' then
  local t = redis.call('TIME')
  due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + due
end
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], due, ARGV[i])
end
return due
