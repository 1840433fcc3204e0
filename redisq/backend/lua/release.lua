#!lua flags=allow-oom
-- release: a stopping consumer gives its reserved messages back to the queue (next in line,
-- the oldest reservation first) and drops its lease, in one step, also at maxmemory (where
-- LMOVE alone is refused, and the messages would wait for the lease to expire).
--
-- KEYS[1]  processing list   redisq:{q}:processing:<consumer>
-- KEYS[2]  pending list      redisq:{q}:pending
-- KEYS[3]  consumers set     redisq:{q}:consumers
-- KEYS[4]  lease key         redisq:{q}:lease:<consumer>
-- KEYS[5]  epochs hash       redisq:{q}:epochs   (our epoch ends: see renew.lua)
-- KEYS[6]  inbox             redisq:{q}:inbox:<consumer>   (optional: a blocking move's
--                                                          message not claimed yet)
-- ARGV[1]  consumer id
-- returns  number of messages given back
local moved = 0
for _, list in ipairs({KEYS[1], KEYS[6]}) do
  while redis.call('LMOVE', list, KEYS[2], 'LEFT', 'RIGHT') do
    moved = moved + 1
  end
end
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4])
redis.call('HDEL', KEYS[5], ARGV[1])
return moved
