-- Set one front-end's counts of the viewers (and their subjects) of several streams of
-- one slot group, drop the counts of front-ends known dead, and, for each stream whose
-- total changes, publish it to the front-ends watching the stream; when it crosses zero,
-- queue stream.occupied or stream.vacated for the stream's webhooks, in the same step.
-- One call for many streams: a front-end's joins and leaves of one moment cost one
-- script per slot group, not one per stream.
-- KEYS: the group's outbox, then presence and meta of each stream.
-- ARGV: instance, publish command, outbox MAXLEN, TTL, number of dead instances, the
--   dead instances, then for each stream: count, subjects (JSON list or ''), stream id,
--   channel.
-- Returns {old total, new total} of each stream, one after the other.
local outbox = KEYS[1]
local me, publish, maxlen, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local ndead = tonumber(ARGV[5])
local out = {}
for s = 0, (#KEYS - 1) / 2 - 1 do
  local presence, meta = KEYS[2 + 2 * s], KEYS[3 + 2 * s]
  local at = 6 + ndead + 4 * s
  local count, subjects = tonumber(ARGV[at]), ARGV[at + 1]
  local stream_id, channel = ARGV[at + 2], ARGV[at + 3]
  local old = tonumber(redis.call('HGET', presence, '#total') or '0')
  for i = 6, 5 + ndead do redis.call('HDEL', presence, ARGV[i], ARGV[i] .. ':s') end
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
    if total > 0 then redis.call('EXPIRE', presence, ttl) end
  else
    if total == 0 then
      redis.call('DEL', presence)
    else
      redis.call('HSET', presence, '#total', total)
      redis.call('EXPIRE', presence, ttl)
    end
    if channel ~= '' then
      redis.call(publish, channel, '0 0 - P\n' .. total)
    end
    if (old == 0) ~= (total == 0) then
      local m = redis.call('HMGET', meta, 'webhook', 'webhook_url')
      if m[1] then
        local t = redis.call('TIME')
        local now = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
        local kind = (total > 0) and 'stream.occupied' or 'stream.vacated'
        local data = string.format('{"id":"%s","viewers":%d}', stream_id, total)
        redis.call('XADD', outbox, 'MAXLEN', '~', maxlen, '*', 'k', 'event', 'stream',
          stream_id, 'hook', m[1], 'url', m[2] or '', 'type', kind, 'data', data, 'at', now)
      end
    end
  end
  out[#out + 1] = old
  out[#out + 1] = total
end
return out
