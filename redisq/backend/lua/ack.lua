#!lua flags=allow-oom
-- ack: remove finished messages from a consumer's processing list; only now do they leave Redis.
--
-- KEYS[1]  processing list   redisq:{q}:processing:<consumer>
-- KEYS[2]  stats hash        redisq:{q}:stats
-- ARGV     the messages to acknowledge (1 or more)
-- returns  how many were found and removed (a message already recovered by another consumer
--          after this one's lease expired is not counted)
local removed = 0
for i = 1, #ARGV do
  removed = removed + redis.call('LREM', KEYS[1], -1, ARGV[i])
end
if removed > 0 then redis.call('HINCRBY', KEYS[2], 'acked', removed) end
return removed
