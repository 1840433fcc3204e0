-- lock_extend: renew a lock's lease only if it is still held with our token.
--
-- KEYS[1]  lock key          redisq:lock:{<name>}
-- ARGV[1]  the holder's token
-- ARGV[2]  new lease length in milliseconds
-- returns  1 if renewed, 0 if the lock was not ours any more
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
