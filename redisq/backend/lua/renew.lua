#!lua flags=allow-oom
-- renew: keep a consumer's lease on one queue alive, and check its epoch.
--
-- The epoch is a token the consumer shows in every step it takes on the queue's jobs
-- (reserve, start, settle): those steps refuse a token that is no longer the consumer's entry
-- in the epochs hash. Recovery (requeue_stale.lua) deletes that entry when it takes the
-- messages of a consumer whose lease expired, so a consumer that was frozen past its lease
-- (SIGSTOP, a paused VM, a long GC) cannot start or settle what it held once it wakes; here it
-- learns it, and registers again under a fresh token. A lease that merely expired, with no
-- recovery yet, keeps its epoch: nothing was taken from the consumer. It also works at
-- maxmemory (SADD and SET alone are refused there, and a consumer that drains a full Redis
-- must keep its lease).
--
-- KEYS[1]  consumers set     redisq:{q}:consumers
-- KEYS[2]  lease key         redisq:{q}:lease:<consumer>
-- KEYS[3]  epochs hash       redisq:{q}:epochs
-- ARGV[1]  consumer id
-- ARGV[2]  lease length in milliseconds
-- ARGV[3]  the consumer's token ('' before it first registered)
-- ARGV[4]  a fresh token, used when ARGV[3] is no longer (or not yet) the consumer's epoch
-- returns  the token in force: ARGV[3] when the epoch held, ARGV[4] when it registered anew
local token = ARGV[3]
if token == '' or redis.call('HGET', KEYS[3], ARGV[1]) ~= token then
  token = ARGV[4]
  redis.call('HSET', KEYS[3], ARGV[1], token)
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], token, 'PX', ARGV[2])
return token
