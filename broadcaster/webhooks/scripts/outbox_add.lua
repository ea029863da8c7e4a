-- Queue a webhook event about one stream, if the stream asked for webhooks when it was
-- created, to the same receivers as its end. Returns 1 if queued, 0 if not.
-- KEYS: meta, outbox. ARGV: stream id, type, data (JSON), outbox MAXLEN.
-- An error, with nothing written, for what Outbox.add refuses (names.py): a stream id
-- outside [A-Za-z0-9_-]{1,64}, a type that is not dotted lower-case words.
local sid, etype = ARGV[1], ARGV[2]
if #sid > 64 or not string.find(sid, '^[A-Za-z0-9_%-]+$')
   or not string.find(etype, '^[a-z][a-z0-9_]*%.[a-z][a-z0-9_.]*$')
   or string.find(etype, '%.[^a-z]') or string.sub(etype, -1) == '.' then
  return redis.error_reply('INVALID not a stream id or a webhook event type')
end
local m = redis.call('HMGET', KEYS[1], 'webhook', 'webhook_url')
if not m[1] then return 0 end
local t = redis.call('TIME')
local now = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'k', 'event', 'stream', ARGV[1],
  'hook', m[1], 'url', m[2] or '', 'type', ARGV[2], 'data', ARGV[3], 'at', now)
return 1
