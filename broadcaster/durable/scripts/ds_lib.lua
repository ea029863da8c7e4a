-- Shared by the Durable Streams scripts (prepended to each; Redis has no includes).
-- A Durable Stream is a Redis Stream of entries <seq>-0 with fields t (type), d (data),
-- h (history tag), beside a hash of metadata, a hash of producer states and a set of
-- forks, all under one hash tag (keys.py). Entry types, none of which an event of the
-- contract can have (their types start with a letter or digit):
--   .d  data that does not end a POST (a JSON message followed by more of its batch)
--   .p  data that ends a POST (a byte chunk, or a batch's last JSON message)
--   .c  the closure marker: no data, ends the stream
-- 'dseq'/'dtag' in the metadata name the last data entry (the tail offset readers see);
-- 'seq'/'tag' the last entry, the marker included.

local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end

-- Keys expire together: a sliding TTL (ms), an absolute time (ms), else the idle TTL (s).
local function expire_all(ks, ttl, exp, idle)
  for _, k in ipairs(ks) do
    if ttl and ttl ~= '' then
      redis.call('PEXPIRE', k, tonumber(ttl) * 1000)
    elseif exp and exp ~= '' then
      redis.call('PEXPIREAT', k, tonumber(exp))
    else
      redis.call('EXPIRE', k, idle)
    end
  end
end

-- XADD entries after seq/tag; entries is a flat list {type, data, type, data, ...}.
-- Returns the new seq, tag, last data seq, last data tag, bytes added, and the frames
-- for the push message (nil when over push_max).
local function add_entries(log, seq, tag, dseq, dtag, entries, push_max)
  local frames = {}
  local size = 0
  local added = 0
  for i = 1, #entries, 2 do
    local etype, data = entries[i], entries[i + 1]
    seq = seq + 1
    tag = string.sub(redis.sha1hex(tag .. etype .. ' ' .. data), 1, 8)
    redis.call('XADD', log, seq .. '-0', 't', etype, 'd', data, 'h', tag)
    if etype ~= '.c' then
      dseq, dtag = seq, tag
      added = added + #data
    end
    if frames then
      size = size + #data + 24
      if size > push_max then
        frames = nil
      else
        frames[#frames + 1] = tag .. ' ' .. #data .. '\n' .. data
      end
    end
  end
  return seq, tag, dseq, dtag, added, frames
end

-- "<first> <last> <tag> <T|->\n<frames>": the hub's push message, as append.lua makes it
-- for events (frames here are "<tag> <length>\n<bytes>" each, binary-safe).
local function publish(channel, cmd, first, last, tag, ended, frames)
  if channel == '' then return end
  local head = string.format('%d %d %s %s\n', first, last, tag, ended and 'T' or '-')
  local body = ''
  if frames then body = table.concat(frames) end
  redis.call(cmd, channel, head .. body)
end

-- Byte-wise "a > b": Redis sets LC_COLLATE from the environment and Lua compares strings
-- with strcoll, so '>' would order Stream-Seq values by the locale, not by bytes.
local function bytes_gt(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end

-- An answer that writes nothing yet acknowledges a write (a producer's duplicate, a close
-- or a create repeated) writes one field again, as it is. With BROADCASTER_DS_WAIT_REPLICAS
-- the WAIT that follows the script waits for its connection's last write: Valkey and Redis
-- 7.2+ count only writes (Redis 7.0 counted any command), so without a write here WAIT
-- would return at once on a connection that had not made the write answered for, and a
-- retry would be acknowledged before any replica had it. This write comes after it in the
-- replication stream: once a replica has this one, it has that one too.
local function rewrite(key, field)
  local value = redis.call('HGET', key, field)
  if value then redis.call('HSET', key, field, value) end
end
