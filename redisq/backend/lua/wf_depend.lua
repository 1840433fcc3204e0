-- wf_depend: register a deferred job as a dependent of one parent, unless the parent is over
-- already. The parent's status is read in the same step as the registration, and a worker's
-- settle writes that status in this slot too: a parent is either seen over here, or it is
-- listed in its queue's parents set, which workers sweep once it is over (wf_resolve).
--
-- KEYS[1]  parent record     redisq:{q}:job:<parent id>
-- KEYS[2]  its dependents    redisq:{q}:wf:deps:<parent id>
-- KEYS[3]  parents set       redisq:{q}:wf:parents
-- ARGV[1]  the dependent, "<queue>|<job id>"
-- ARGV[2]  parent id
-- ARGV[3]  now (unix seconds, as text)
-- returns  '' when registered; else the parent's final status (succeeded, failed, dead,
--          cancelled). A parent without a record here is registered too: the sweep reads its
--          status through Records (wherever finished records live) and resolves it, as
--          'missing' if it has none at all.
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'succeeded' or st == 'failed' or st == 'dead' or st == 'cancelled' then return st end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], 'NX', ARGV[3], ARGV[2])
return ''
