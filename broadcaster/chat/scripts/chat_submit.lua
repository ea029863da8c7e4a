-- Make a generation the chat's latest, unless another submit got there first: the chat's
-- generation must still be the one the caller saw (ARGV[1], "" for none). The history
-- list keeps its first ARGV[8] messages (all of them replaced when it is -1), then the
-- messages given are pushed after them (one JSON each) with their positions: a submit
-- that adds a message writes that message, whatever the chat's length;
-- the chat's turn count goes up by one and the turn names its generation and message.
-- A chat made here records its owner, its creation time and its title; every submit
-- sets when it changed and counts a new version of its history. The model list keeps
-- step with the history list (each message's model turns), and the chat notes how many
-- of its entries are the new generation's request (model_for, model_upto); a model list
-- found out of step (a record of an older version) is dropped, and the generation named
-- for none.
-- KEYS: the chat's hash, history list, positions hash, turns hash, model list.
-- ARGV: seen generation, new generation, assistant message id, TTL (s; 0: none), the
-- turn's JSON (without its number), owner, title, the messages kept (-1: none), then each
-- pushed message's id, JSON and model turns' JSON, in order.
-- Returns the new turn's number, or 0 when the chat's generation changed meanwhile.
-- A submit sent again after its reply was lost (a failover, a cut connection) finds its
-- own generation the chat's already (a new generation's id is new): it answers with its
-- turn again, changing nothing.
local chat, history, positions, turns, model = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local current = redis.call('HGET', chat, 'generation') or ''
if current ~= ARGV[1] then
  if current == ARGV[2] and current ~= '' then return tonumber(redis.call('HGET', chat, 'turn')) end
  return 0
end
local ttl = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
-- 'messages' is the whole-JSON field records kept before the history list.
redis.call('HDEL', chat, 'messages')
if redis.call('HSETNX', chat, 'created_at', now) == 1 then
  redis.call('HSET', chat, 'owner', ARGV[6])
end
if ARGV[7] ~= '' then redis.call('HSETNX', chat, 'title', ARGV[7]) end
redis.call('HSET', chat, 'generation', ARGV[2], 'message_id', ARGV[3], 'updated_at', now)
redis.call('HINCRBY', chat, 'version', 1)
local turn = redis.call('HINCRBY', chat, 'turn', 1)
-- A record of an older version has no count of settled turns: its earlier ones need none.
if not redis.call('HGET', chat, 'settled') then redis.call('HSET', chat, 'settled', turn - 1) end
redis.call('HSET', turns, turn, ARGV[5])
local keep = tonumber(ARGV[8])
if not in_step(history, model) then redis.call('DEL', model) end
if keep < 0 then
  redis.call('DEL', history, positions, model)
elseif redis.call('LLEN', history) > keep then
  -- What follows the kept messages goes (an edit, a regenerate): their ids too.
  for _, item in ipairs(redis.call('LRANGE', history, keep, -1)) do
    local ok, message = pcall(cjson.decode, item)
    if ok and type(message) == 'table' and type(message.id) == 'string' then
      redis.call('HDEL', positions, message.id)
    end
  end
  if keep == 0 then
    redis.call('DEL', history, model)
  else
    redis.call('LTRIM', history, 0, keep - 1)
    redis.call('LTRIM', model, 0, keep - 1)
  end
end
-- Out of step, the model list was dropped: in step again if the history is empty too.
local stepped = in_step(history, model)
fill(history, positions, stepped and model, 9)
if stepped then
  redis.call('HSET', chat, 'model_for', ARGV[2], 'model_upto', redis.call('LLEN', model))
else
  redis.call('HDEL', chat, 'model_for', 'model_upto')
end
for _, key in ipairs(KEYS) do
  if ttl > 0 then redis.call('EXPIRE', key, ttl) else redis.call('PERSIST', key) end
end
return turn
