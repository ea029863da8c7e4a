-- Set one front-end's count of a stream's viewers (and their subjects), drop the counts
-- of front-ends known dead, and, when the stream's total changes, publish it to the
-- front-ends watching the stream; when it crosses zero, queue stream.occupied or
-- stream.vacated for the stream's webhooks, in the same step.
-- KEYS: presence, meta, outbox. ARGV: instance, count, subjects (JSON list or ''),
--   stream id, channel, publish command, outbox MAXLEN, TTL, then dead instances.
-- Returns {old total, new total}.
local presence, meta, outbox = KEYS[1], KEYS[2], KEYS[3]
local me, count, subjects = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local old = tonumber(redis.call('HGET', presence, '#total') or '0')
for i = 9, #ARGV do redis.call('HDEL', presence, ARGV[i], ARGV[i] .. ':s') end
if me ~= '' then
  if count > 0 then
    redis.call('HSET', presence, me, count)
    if subjects ~= '' then redis.call('HSET', presence, me .. ':s', subjects)
    else redis.call('HDEL', presence, me .. ':s') end
  else
    redis.call('HDEL', presence, me, me .. ':s')
  end
end
local total = 0
local all = redis.call('HGETALL', presence)
for i = 1, #all, 2 do
  local f = all[i]
  if string.sub(f, 1, 1) ~= '#' and string.sub(f, -2) ~= ':s' then
    total = total + tonumber(all[i + 1])
  end
end
if total == old then
  if total > 0 then redis.call('EXPIRE', presence, tonumber(ARGV[8])) end
  return {old, total}
end
if total == 0 then
  redis.call('DEL', presence)
else
  redis.call('HSET', presence, '#total', total)
  redis.call('EXPIRE', presence, tonumber(ARGV[8]))
end
if ARGV[5] ~= '' then
  redis.call(ARGV[6], ARGV[5], '0 0 - P\n' .. total)
end
if (old == 0) ~= (total == 0) then
  local m = redis.call('HMGET', meta, 'webhook', 'webhook_url')
  if m[1] then
    local t = redis.call('TIME')
    local now = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
    local kind = (total > 0) and 'stream.occupied' or 'stream.vacated'
    local data = string.format('{"id":"%s","viewers":%d}', ARGV[4], total)
    redis.call('XADD', outbox, 'MAXLEN', '~', ARGV[7], '*', 'k', 'event', 'stream', ARGV[4],
      'hook', m[1], 'url', m[2] or '', 'type', kind, 'data', data, 'at', now)
  end
end
return {old, total}
