-- Settle a chat's turn: the next one not settled yet (ARGV[1] must be the count settled
-- so far plus one). When that turn's generation (ARGV[2]) is still the chat's latest, its
-- answer (ARGV[3], the UI message's JSON; '' for none) goes into the history list: in
-- place of the message of its id when that is the list's last (the answer continued
-- it), else after it; the chat's version stays (what the history says is the same). The turn's end is noted (ARGV[5]: the chat's status), and its
-- chat.turn.finished webhook queued in the chat's group's outbox when the generation
-- asked for webhooks (ARGV[6]: its receivers, '' for none; ARGV[7]: its own URL;
-- ARGV[8]: the event's data, JSON).
-- The answer's model turns (ARGV[12]) go into the model list in the same place, when
-- that list keeps step with the history list.
-- KEYS: the chat's hash, history list, positions hash, turns hash, model list, the outbox.
-- ARGV: turn, generation, answer JSON, answer id, status, hook, url, data, TTL (s; 0:
-- none), the outbox's length, the chat id, the answer's model turns' JSON.
-- Returns 1 when settled here, 0 when it was already (or the chat is gone), -1 when an
-- earlier turn is not.
local chat, history, positions, model, outbox = KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6]
if redis.call('EXISTS', chat) == 0 then return 0 end
local k = tonumber(ARGV[1])
local settled = tonumber(redis.call('HGET', chat, 'settled') or '0')
if settled >= k then return 0 end
if settled ~= k - 1 then return -1 end
local t = redis.call('TIME')
local now = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
local m = redis.call('HMGET', chat, 'generation', 'turn')
if ARGV[3] ~= '' and m[1] == ARGV[2] and tonumber(m[2]) == k then
  local length = redis.call('LLEN', history)
  local stepped = length == redis.call('LLEN', model)
  local at = redis.call('HGET', positions, ARGV[4])
  if at and tonumber(at) == length - 1 then
    redis.call('LSET', history, -1, ARGV[3])
    if stepped then redis.call('LSET', model, -1, ARGV[12]) end
  else
    redis.call('RPUSH', history, ARGV[3])
    redis.call('HSET', positions, ARGV[4], length)
    if stepped then redis.call('RPUSH', model, ARGV[12]) end
  end
end
redis.call('HSET', chat, 'settled', k, 'status', ARGV[5], 'updated_at', now)
if ARGV[6] ~= '' then
  redis.call('XADD', outbox, 'MAXLEN', '~', ARGV[10], '*', 'k', 'event', 'stream', ARGV[11],
    'hook', ARGV[6], 'url', ARGV[7], 'type', 'chat.turn.finished', 'data', ARGV[8], 'at', now)
end
local ttl = tonumber(ARGV[9])
for i = 1, 5 do
  if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) else redis.call('PERSIST', KEYS[i]) end
end
return 1
