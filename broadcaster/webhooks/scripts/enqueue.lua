-- Add one outbox entry's deliveries to the deliveries stream, once: a move done again
-- (its deliverer died before acknowledging the outbox entry) adds nothing.
-- KEYS: deliveries, moved marker (keys.webhook_moved_key). ARGV: marker TTL, then five
-- fields per delivery: id, type, stream, to, body. Returns the deliveries added.
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local n = 0
for i = 2, #ARGV, 5 do
  redis.call('XADD', KEYS[1], '*', 'id', ARGV[i], 'type', ARGV[i + 1],
    'stream', ARGV[i + 2], 'to', ARGV[i + 3], 'body', ARGV[i + 4])
  n = n + 1
end
return n
