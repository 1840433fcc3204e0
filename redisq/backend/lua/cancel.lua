#!lua flags=allow-oom
-- cancel: stop a job that has not started, by taking its message out of the queue (or the
-- delayed set) in the same step that marks it cancelled. A job whose message a worker already
-- reserved is too late to cancel: it runs.
--
-- The record does not copy the message (it lives in the queue only): the caller finds it
-- there and passes it (Records.cancel); a record written by an older version still names it.
--
-- KEYS[1]  job record        redisq:{q}:job:<id>
-- KEYS[2]  pending list      redisq:{q}:pending
-- KEYS[3]  delayed zset      redisq:{q}:delayed
-- KEYS[4]  unique key        redisq:{q}:unique:<key>   (only when the job holds one)
-- ARGV[1]  job id
-- ARGV[2]  finish time (unix seconds, as text)
-- ARGV[3]  the job's message as it waits in the queue
-- ARGV[4]  record TTL in ms (0 = keep)
-- returns  1 if cancelled, 0 if the job was not waiting any more
local status = redis.call('HGET', KEYS[1], 'status')
-- (A throttled job waits in the delayed set: it is cancelled like a retrying one.)
if status ~= 'queued' and status ~= 'retrying' and status ~= 'throttled' then return 0 end
local message = ARGV[3]
local removed = redis.call('LREM', KEYS[2], 1, message) + redis.call('ZREM', KEYS[3], message)
if removed == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[2])
-- Kept as long as a succeeded job's record, not for ever (a cancelled job is finished too).
if tonumber(ARGV[4] or '0') > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
if KEYS[4] and redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
return 1
