-- leader: take or keep the scheduler's leader lease.
--
-- KEYS[1]  leader key        redisq:scheduler:leader
-- ARGV[1]  this scheduler's token
-- ARGV[2]  lease length in milliseconds
-- returns  1 if this scheduler leads (lease taken or renewed), else 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
