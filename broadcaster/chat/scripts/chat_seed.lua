-- Seed a chat's history from an app's own store: the messages become its history list
-- and their positions, in place of what it held. A chat that exists is seeded only when
-- the caller names its version (ARGV[1]; '' for a chat that must not exist yet), and
-- then keeps its owner and its latest answer's turn, which counts as settled: the
-- history given takes the place of all of it.
-- The model list is set beside it (each message's model turns), and no generation's
-- request names it any more.
-- KEYS: the chat's hash, history list, positions hash, turns hash, model list.
-- ARGV: the version expected ('' for none), owner, title, TTL (s; 0: none), then each
-- message's id, JSON and model turns' JSON, in order.
-- Returns the chat's new version, -1 when it exists and no version was named, -2 when
-- its version is another.
local chat, history, positions, model = KEYS[1], KEYS[2], KEYS[3], KEYS[5]
local exists = redis.call('EXISTS', chat) == 1
if exists and ARGV[1] == '' then return -1 end
if ARGV[1] ~= '' and (redis.call('HGET', chat, 'version') or '') ~= ARGV[1] then return -2 end
local t = redis.call('TIME')
local now = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
if not exists then
  redis.call('HSET', chat, 'generation', '', 'message_id', '', 'turn', 0, 'owner', ARGV[2],
    'created_at', now)
end
redis.call('HDEL', chat, 'messages', 'title')
if ARGV[3] ~= '' then redis.call('HSET', chat, 'title', ARGV[3]) end
local turn = redis.call('HGET', chat, 'turn') or '0'
redis.call('HSET', chat, 'settled', turn, 'updated_at', now)
local version = redis.call('HINCRBY', chat, 'version', 1)
redis.call('DEL', history, positions, model)
redis.call('HDEL', chat, 'model_for', 'model_upto')
fill(history, positions, model, 5)
local ttl = tonumber(ARGV[4])
for _, key in ipairs(KEYS) do
  if ttl > 0 then redis.call('EXPIRE', key, ttl) else redis.call('PERSIST', key) end
end
return version
