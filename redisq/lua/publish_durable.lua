-- publish_durable: append a message to a channel's capped stream, then publish it with its
-- stream id, in one atomic step, so live subscribers and replaying ones agree on ids.
--
-- KEYS[1]  stream            redisq:stream:{<channel>}
-- ARGV[1]  channel name      (pub/sub channels are not keys)
-- ARGV[2]  message body
-- ARGV[3]  approximate most entries the stream keeps (MAXLEN ~)
-- returns  { stream id, number of subscribers that received it }
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'd', ARGV[2])
local receivers = redis.call('PUBLISH', ARGV[1], id .. '\n' .. ARGV[2])
return { id, receivers }
