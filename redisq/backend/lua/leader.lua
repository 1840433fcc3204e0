-- leader: take or keep the scheduler's leader lease, and read Redis's clock.
-- A renewal checks the token, so a scheduler whose lease ran out (and was taken by another)
-- cannot extend the new leader's lease; a free lease is taken with SET NX PX.
-- The clock comes back with the answer so that every scheduler computes its ticks on the same
-- clock (Redis's), whatever the skew of the hosts' clocks.
--
-- KEYS[1]  leader key        redisq:scheduler:leader
-- ARGV[1]  this scheduler's token
-- ARGV[2]  lease length in milliseconds
-- returns  { 1 if this scheduler leads (lease taken or renewed) else 0, seconds, microseconds }
local t = redis.call('TIME')
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return { 1, t[1], t[2] }
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return { 1, t[1], t[2] } end
return { 0, t[1], t[2] }
