#!lua flags=allow-oom
-- wf_release: forget a parent whose dependents have all been resolved (wf_resolve).
--
-- KEYS[1]  its dependents    redisq:{q}:wf:deps:<parent id>
-- KEYS[2]  parents set       redisq:{q}:wf:parents
-- ARGV[1]  parent id
-- returns  1
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
