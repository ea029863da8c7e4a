-- Append a batch of events to one stream, atomically, if the writer's conditions hold,
-- and publish it on the stream's channel for the front-ends watching it.
-- A stream that asked for webhooks also gets its end written to its group's outbox, in
-- this same step (keys.outbox_key).
-- A stream this append creates (a job feed's first publish) is named in its group's index
-- and announced on its group's channel (keys.names_key, keys.created_channel).
-- Extras (ARGV[16], JSON, or ''), for a generation that waits for a person or is steered:
-- "outbox": [type, data] queues that webhook event too; "zadd": a deadline (ms) puts the
-- stream in its group's waiting set, "zrem": takes it out; "ltrim": n drops the first n
-- steering messages (the ones this batch records). All under the stream's own hash tag.
-- An append's token (ARGV[17], or ''): redis-py sends a command again when its connection
-- is cut before the reply (a failover, a network fault), and an append must not write
-- twice. The stream's metadata keeps the token of its last append ('once'): an append
-- whose token is that one was made already, and answers {'OK', seq} with nothing
-- written, whatever the stream's state (ended since). (Only the last: a retry follows the
-- cut at once; another writer's append in between makes it an append again.)
-- A generation's end also puts it in its group's unsettled set (keys.unsettled_key), for a
-- front-end to add its usage to its user's totals.
-- KEYS: log, meta, text, outbox, names, waiting set, steering list, unsettled set. ARGV: see
-- EventLog.append (log.py). Returns {status, seq}, and the messages it did not publish
-- ({channel, message, ...}) when ARGV[11] names no publish command.
-- First of all, as log.py would (names.py): INVALID, with nothing read or written, for a
-- stream name that is not a stream id ([A-Za-z0-9_-]{1,64}), an event type outside
-- [a-z0-9][a-z0-9-]{0,63}, or data holding a line break. The type and the data become the
-- "event:" and "data:" lines of the frames published below: no caller may split one.
local log, meta, text, outbox, names = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local waiting, steering, unsettled = KEYS[6], KEYS[7], KEYS[8]
local kind, expected, owner = ARGV[1], ARGV[2], ARGV[3]
local ended_ttl, idle_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local text_mode, text_arg = ARGV[6], ARGV[7]
local max_events, max_bytes = tonumber(ARGV[8]), tonumber(ARGV[9])
local channel, publish, push_max = ARGV[10], ARGV[11], tonumber(ARGV[12])
local n_meta = tonumber(ARGV[13])
local feed_webhook, outbox_max = ARGV[14], ARGV[15]
local extras, once = ARGV[16], ARGV[17]
local first = 18 + 2 * n_meta
-- No publish command (''): the durability mode waits (core/durability.py). The messages
-- are then returned, not published, and the committer publishes them once the write is
-- confirmed: no front-end pushes an event that a failover could still lose.
local deferred = {}
local function pub(target, message)
  if publish ~= '' then
    redis.call(publish, target, message)
  else
    deferred[#deferred + 1] = target
    deferred[#deferred + 1] = message
  end
end
local sid = string.match(meta, '}:(.+):meta$')
if not sid or #sid > 64 or not string.find(sid, '^[A-Za-z0-9_%-]+$') then
  return {'INVALID', 0}
end
for i = first, #ARGV, 2 do
  local etype, data = ARGV[i], ARGV[i + 1]
  if #etype > 64 or not string.find(etype, '^[a-z0-9][a-z0-9%-]*$') or not data
     or string.find(data, '\n', 1, true) or string.find(data, '\r', 1, true) then
    return {'INVALID', 0}
  end
end
local t = redis.call('TIME')
local now = tostring(t[1] * 1000 + math.floor(t[2] / 1000))

local m = redis.call('HMGET', meta, 'kind', 'seq', 'ended', 'owner', 'bytes', 'tag', 'webhook',
  'once')
if once ~= '' and m[8] == once then
  if publish == '' then return {'OK', tonumber(m[2]), {}} end
  return {'OK', tonumber(m[2])}
end
local seq
local create = false
if not m[1] then
  if kind ~= 'feed' then return {'NOSTREAM', 0} end
  seq = 0
  create = true
else
  seq = tonumber(m[2])
  if kind ~= '' and kind ~= m[1] then return {'KIND', seq} end
  if m[3] then return {'ENDED', seq} end
end
if expected ~= '' and tonumber(expected) ~= seq then return {'STALE', seq} end
-- '-' as the owner: only while nobody has claimed the stream (a queued generation).
if owner == '-' then
  if m[4] then return {'OWNER', seq} end
elseif owner ~= '' and owner ~= m[4] then return {'OWNER', seq} end

-- Size limits; a lone terminal event is always accepted, so any stream can be ended.
local size = tonumber(m[5]) or 0
local added = 0
for i = first + 1, #ARGV, 2 do added = added + #ARGV[i] end
local lone = ARGV[first]
local lone_terminal = (#ARGV == first + 1) and
  (lone == 'finish' or lone == 'error' or lone == 'abort')
if not lone_terminal and
   (seq + (#ARGV - first + 1) / 2 > max_events or size + added > max_bytes) then
  return {'LIMIT', seq}
end

local ended = false
local ended_data = nil
local tag = m[6] or ''
local first_seq = seq + 1
-- The frames go in the message too, unless the batch is large: front-ends then read it.
local frames = nil
if added + 64 * (#ARGV - first + 1) / 2 <= push_max then frames = {} end
local i = first
while i < #ARGV do
  local etype = ARGV[i]
  seq = seq + 1
  -- The history tag chains this event to every one before it (log.py's docstring).
  tag = string.sub(redis.sha1hex(tag .. etype .. ' ' .. ARGV[i + 1]), 1, 8)
  local id = string.format('%d', seq)
  redis.call('XADD', log, id .. '-0', 't', etype, 'd', ARGV[i + 1], 'h', tag)
  if frames then
    -- Byte for byte what sse.encode makes of the stored event.
    frames[#frames + 1] = 'id: ' .. id .. '.' .. tag .. '\nevent: ' .. etype ..
      '\ndata: ' .. ARGV[i + 1] .. '\n\n'
  end
  if etype == 'finish' or etype == 'error' or etype == 'abort' then
    ended = etype
    ended_data = ARGV[i + 1]
  end
  i = i + 2
end

local updates = {'seq', seq, 'updated_at', now, 'bytes', size + added, 'tag', tag}
if create then
  redis.call('ZADD', names, 0, sid)
  if channel ~= '' then
    local group, db = string.match(channel, '^(.-}):.+:push:(%d+)$')
    pub(group .. ':created:' .. db, sid)
  end
  updates[#updates + 1] = 'kind'
  updates[#updates + 1] = 'feed'
  updates[#updates + 1] = 'created_at'
  updates[#updates + 1] = now
  if feed_webhook ~= '' then
    -- Decided by the creating front-end's settings: any later writer triggers the hook.
    m[7] = feed_webhook
    updates[#updates + 1] = 'webhook'
    updates[#updates + 1] = feed_webhook
  end
end
if once ~= '' then
  updates[#updates + 1] = 'once'
  updates[#updates + 1] = once
end
for j = 18, 17 + 2 * n_meta, 2 do
  updates[#updates + 1] = ARGV[j]
  updates[#updates + 1] = ARGV[j + 1]
end
if ended then
  updates[#updates + 1] = 'ended'
  updates[#updates + 1] = ended
  if m[1] == 'generation' then
    local status = {finish = 'completed', error = 'failed', abort = 'cancelled'}
    updates[#updates + 1] = 'status'
    updates[#updates + 1] = status[ended]
  end
end
redis.call('HSET', meta, unpack(updates))
if text_mode == 'append' and text_arg ~= '' then
  redis.call('APPEND', text, text_arg)
elseif text_mode == 'reset' then
  redis.call('SET', text, text_arg)
end
local ttl = idle_ttl
if ended then ttl = ended_ttl end
redis.call('EXPIRE', log, ttl)
redis.call('EXPIRE', meta, ttl)
redis.call('EXPIRE', text, ttl)
if ended and m[7] then
  -- The webhook of the stream's end: raw fields, the deliverer composes the body.
  local f = redis.call('HMGET', meta, 'kind', 'created_at', 'usage', 'error', 'webhook_url',
    'user', 'chat_id', 'provider', 'model')
  redis.call('XADD', outbox, 'MAXLEN', '~', outbox_max, '*', 'k', 'end',
    'stream', sid, 'hook', m[7], 'url', f[5] or '',
    'kind', f[1], 'type', ended, 'event', ended_data, 'seq', seq, 'at', now,
    'created_at', f[2] or '', 'usage', f[3] or '', 'error', f[4] or '',
    'user', f[6] or '', 'chat_id', f[7] or '', 'provider', f[8] or '', 'model', f[9] or '')
end
if ended and unsettled and m[1] == 'generation' then
  redis.call('ZADD', unsettled, now, sid)
  if redis.call('ZCARD', unsettled) > 100000 then  -- keys.UNSETTLED_MAX
    redis.call('ZREMRANGEBYRANK', unsettled, 0, 0)
  end
end
if ended then redis.call('ZREM', waiting, sid) end
-- The front-ends' timed work is woken, not polled (keys.wake_channel): a generation's end
-- (a chat's waiting message may start) and a new deadline in the waiting set.
local wake = nil
if channel ~= '' then
  local group, db = string.match(channel, '^(.-}):.+:push:(%d+)$')
  wake = group .. ':wake:' .. db
end
if wake and ended and m[1] == 'generation' then pub(wake, 'end ' .. sid) end
if extras ~= '' then
  local x = cjson.decode(extras)
  if x['outbox'] and m[7] then
    local url = redis.call('HGET', meta, 'webhook_url') or ''
    redis.call('XADD', outbox, 'MAXLEN', '~', outbox_max, '*', 'k', 'event', 'stream', sid,
      'hook', m[7], 'url', url, 'type', x['outbox'][1], 'data', x['outbox'][2], 'at', now)
  end
  if x['zadd'] then
    redis.call('ZADD', waiting, x['zadd'], sid)
    if wake then pub(wake, string.format('wait %d %s', x['zadd'], sid)) end
  end
  if x['zrem'] then redis.call('ZREM', waiting, sid) end
  if x['ltrim'] then redis.call('LTRIM', steering, x['ltrim'], -1) end
end
if channel ~= '' then
  -- "<first seq> <last seq> <tag of the last> <T if it ends the stream, else -> <now>
  -- \n<frames>", now: the append's time (ms, this server's clock), for the front-end's
  -- append-to-write latency
  local head = string.format('%d %d %s %s %s\n', first_seq, seq, tag, ended and 'T' or '-', now)
  local body = ''
  if frames then
    if ended then frames[#frames + 1] = 'data: [DONE]\n\n' end
    body = table.concat(frames)
  end
  pub(channel, head .. body)
end
if publish == '' then return {'OK', seq, deferred} end
return {'OK', seq}
