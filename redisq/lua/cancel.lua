#!lua flags=allow-oom
-- cancel: stop a job that has not started, by taking its message out of the queue (or the
-- delayed set) in the same step that marks it cancelled. A job whose message a worker already
-- reserved is too late to cancel: it runs.
--
-- KEYS[1]  job record        redisq:{q}:job:<id>
-- KEYS[2]  pending list      redisq:{q}:pending
-- KEYS[3]  delayed zset      redisq:{q}:delayed
-- KEYS[4]  unique key        redisq:{q}:unique:<key>   (only when the job holds one)
-- ARGV[1]  job id
-- ARGV[2]  finish time (unix seconds, as text)
-- returns  1 if cancelled, 0 if the job was not waiting any more
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'retrying' then return 0 end
local message = redis.call('HGET', KEYS[1], 'message')
local removed = redis.call('LREM', KEYS[2], 1, message) + redis.call('ZREM', KEYS[3], message)
if removed == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[2])
if KEYS[4] and redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
return 1
