-- lock_release: delete a lock only if it is still held with our token (a holder whose lease
-- ran out must not release the lock of the next holder).
--
-- KEYS[1]  lock key          redisq:lock:{<name>}
-- ARGV[1]  the holder's token
-- returns  1 if released, 0 if the lock was not ours any more
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
