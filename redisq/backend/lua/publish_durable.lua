-- publish_durable: append a message to a channel's capped stream, then publish it with its
-- stream id, in one atomic step, so live subscribers and replaying ones agree on ids.
--
-- KEYS[1]  stream            redisq:stream:{<channel>}
-- ARGV[1]  channel name      (pub/sub channels are not keys)
-- ARGV[2]  message body
-- ARGV[3]  approximate most entries the stream keeps (MAXLEN ~)
-- ARGV[4]  'S': sharded pub/sub (Redis Cluster 7+), SPUBLISH instead of PUBLISH. A script may
--          SPUBLISH only to a channel in its keys' slot: the stream's hash tag is the channel
--          name, so the channel hashes to the stream's slot.
-- returns  { stream id, number of subscribers that received it }
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'd', ARGV[2])
local message = id .. '\n' .. ARGV[2]
local receivers
if ARGV[4] == 'S' then
  receivers = redis.call('SPUBLISH', ARGV[1], message)
else
  receivers = redis.call('PUBLISH', ARGV[1], message)
end
return { id, receivers }
