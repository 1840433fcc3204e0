-- reserve: move up to N messages from a queue's pending list to one consumer's processing list.
-- The move is the reservation: a message never exists only in a reply on the wire, so a lost
-- reply or a dead consumer can delay a message but never lose it.
--
-- KEYS[1]  pending list      redisq:{q}:pending
-- KEYS[2]  processing list   redisq:{q}:processing:<consumer>
-- KEYS[3]  lease key         redisq:{q}:lease:<consumer>
-- KEYS[4]  consumers set     redisq:{q}:consumers
-- ARGV[1]  N: most messages to move (integer >= 1)
-- ARGV[2]  consumer id
-- ARGV[3]  lease length in milliseconds (refreshed here)
-- returns  array of the moved messages, oldest first (may be empty)
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local msg = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not msg then break end
  out[i] = msg
end
return out
