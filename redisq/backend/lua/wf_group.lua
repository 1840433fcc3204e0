-- wf_group: create a group's state (and its callback's record, waiting as "deferred"), before
-- any member is queued. All keys are under the tag of the queue the callback goes to (for a
-- group without a callback, its first member's queue), so every later member step and the
-- callback's enqueue touch one Cluster slot.
--
-- KEYS[1]  group state       redisq:{q}:wf:group:<id>
-- KEYS[2]  member outcomes   redisq:{q}:wf:group:<id>:results
-- KEYS[3]  active groups     redisq:{q}:wf:active
-- KEYS[4]  callback record   redisq:{q}:job:<callback id>   (only with a callback)
-- ARGV[1]  group id
-- ARGV[2]  number of members
-- ARGV[3]  failure policy: fail | skip | run
-- ARGV[4]  creation time (unix seconds, as text)
-- ARGV[5]  state TTL in ms (how long a group may take, and its results stay readable)
-- ARGV[6]  callback job id ('' = none)
-- ARGV[7]  callback task name
-- ARGV[8]  callback message before its results argument (JSON text)
-- ARGV[9]  callback message after its results argument
-- returns  1 when created, 0 when a group with this id exists already (nothing written)
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'total', ARGV[2], 'policy', ARGV[3], 'created_at', ARGV[4],
  'callback', ARGV[6], 'task', ARGV[7], 'pre', ARGV[8], 'post', ARGV[9])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
if KEYS[4] then
  redis.call('HSET', KEYS[4], 'status', 'deferred', 'task', ARGV[7], 'enqueued_at', ARGV[4],
    'group', ARGV[1])
  redis.call('PEXPIRE', KEYS[4], ARGV[5])
end
return 1
