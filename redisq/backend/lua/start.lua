#!lua flags=allow-oom
-- start: mark a batch of reserved jobs as started, and say which must not run. (Messages
-- reserved in a batch are marked by reserve.lua; this serves those taken by a blocking move,
-- before they run.)
--
-- A blocking move is a plain BLMOVE, which cannot check anything: a worker frozen past its
-- lease may find, when it wakes, the reply of a move the server made while it was stopped, for
-- a message that recovery has since given to another worker (which may have finished it). The
-- epoch token the worker held when it sent the move is checked here: if recovery ended that
-- epoch, nothing is marked and the worker runs none of them.
--
-- KEYS[1]   epochs hash                  redisq:{q}:epochs
-- KEYS[1+i] job record of job i          redisq:{q}:job:<id>
-- ARGV[1]   worker id
-- ARGV[2]   start time (unix seconds, as text)
-- ARGV[3]   consumer id
-- ARGV[4]   the consumer's epoch token when the messages were moved ('' = not checked)
-- ARGV[4+i] attempt number of job i
-- returns   -1 when the token is not the consumer's epoch any more (nothing marked); else for
--           each job, its status before this call ('' if it had no record). A job already
--           'succeeded', 'failed', 'dead', 'cancelled' or 'aborted' is left untouched: the
--           worker settles its message without running it (a duplicate delivery, or a cancel).
if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], ARGV[3]) ~= ARGV[4] then return -1 end
local out = {}
for i = 2, #KEYS do
  local before = redis.call('HGET', KEYS[i], 'status') or ''
  out[i - 1] = before
  if before ~= 'succeeded' and before ~= 'failed' and before ~= 'dead' and before ~= 'cancelled'
      and before ~= 'aborted' then  -- (ctl: aborted)
    redis.call('HSET', KEYS[i], 'status', 'started', 'started_at', ARGV[2], 'worker', ARGV[1],
      'attempts', ARGV[3 + i])
  end
end
return out
