-- Make a generation the chat's latest, unless another submit got there first: the chat's
-- generation must still be the one the caller saw (ARGV[1], "" for none). The messages it
-- was started with become the chat's history list (one JSON each) and their positions;
-- the chat's turn count goes up by one and the turn names its generation and message.
-- KEYS: the chat's hash, history list, positions hash, turns hash.
-- ARGV: seen generation, new generation, assistant message id, TTL (s), the turn's JSON
-- (without its number), then each message's id and JSON, in order.
-- Returns the new turn's number, or 0 when the chat's generation changed meanwhile.
local chat, history, positions, turns = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local current = redis.call('HGET', chat, 'generation') or ''
if current ~= ARGV[1] then return 0 end
local ttl = tonumber(ARGV[4])
-- 'messages' is the whole-JSON field records kept before the history list.
redis.call('HDEL', chat, 'messages')
redis.call('HSET', chat, 'generation', ARGV[2], 'message_id', ARGV[3])
local turn = redis.call('HINCRBY', chat, 'turn', 1)
redis.call('HSET', turns, turn, ARGV[5])
redis.call('DEL', history, positions)
-- In batches: unpack's stack is bounded (a few thousand values).
local batch = 500
local i = 6
local index = 0
while i <= #ARGV do
  local values, places = {}, {}
  local last = math.min(#ARGV, i + 2 * batch - 1)
  for j = i, last, 2 do
    values[#values + 1] = ARGV[j + 1]
    places[#places + 1] = ARGV[j]
    places[#places + 1] = index
    index = index + 1
  end
  redis.call('RPUSH', history, unpack(values))
  redis.call('HSET', positions, unpack(places))
  i = last + 1
end
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ttl) end
return turn
