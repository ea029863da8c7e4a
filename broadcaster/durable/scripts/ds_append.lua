-- Append to a Durable Stream, and/or close it: every check and every write in one step,
-- so data and producer state are kept or lost together (a failover, an AOF rewrite).
-- KEYS: log, meta, producers.
-- ARGV: ct ('' without a body), Stream-Seq, producer id, epoch, seq ('' without producer
--   headers), close ('1'/''), finalize ('1': the last step of making a fork), idle TTL,
--   max entries, max bytes, channel, publish command, push max, the append's token (hex),
--   then {type, data} pairs.
-- Returns {status, dseq, dtag, closed, a, b}; see DurableLog.append for each status.
-- The stream keeps the token of its last append ('once'): an append sent again after its
-- reply was lost (a failover, a cut connection) finds it, and answers OK with the stream
-- as it is, nothing written twice.
local log, meta, producers = KEYS[1], KEYS[2], KEYS[3]
local ct, wseq, pid, epoch_s, pseq_s = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local close, finalize = ARGV[6] == '1', ARGV[7] == '1'
local idle, max_events, max_bytes = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local channel, cmd, push_max = ARGV[11], ARGV[12], tonumber(ARGV[13])
local once = ARGV[14]
local m = redis.call('HMGET', meta, 'kind', 'ct', 'seq', 'tag', 'dseq', 'dtag', 'ended',
  'closed_by', 'wseq', 'deleted', 'pending', 'bytes', 'ttl', 'exp', 'once')
if not m[1] then return {'NOSTREAM', 0, '', '', '', ''} end
if m[1] ~= 'ds' then return {'READONLY', 0, '', '', '', ''} end
if m[10] then return {'GONE', 0, '', '', '', ''} end
if m[11] and not finalize then return {'NOSTREAM', 0, '', '', '', ''} end
local dseq, dtag = tonumber(m[5]), m[6] or ''
if once ~= '' and m[15] == once then
  return {'OK', dseq, dtag, m[7] and '1' or '', '', ''}
end
local has_body = #ARGV > 14
local tuple = ''
if pid ~= '' then tuple = pid .. ':' .. epoch_s .. ':' .. pseq_s end

-- 1. A closed stream takes nothing more; repeating what closed it is not an error.
if m[7] then
  if pid ~= '' and m[8] == tuple then
    rewrite(meta, 'closed_by')
    return {'DUP', dseq, dtag, '1', epoch_s, pseq_s}
  end
  if not has_body and pid == '' then
    rewrite(meta, 'ended')
    return {'CLOSED_OK', dseq, dtag, '1', '', ''}
  end
  return {'CLOSED', dseq, dtag, '1', '', ''}
end
-- 2. The content type of what is appended.
if has_body and ct ~= m[2] then return {'CT', dseq, dtag, '', '', ''} end
-- 3. The producer: fenced by epoch, deduplicated by seq (before Stream-Seq, so that a
-- retry carrying both is a duplicate, not a conflict).
local new_state = nil
if pid ~= '' then
  local epoch, pseq = tonumber(epoch_s), tonumber(pseq_s)
  local state = redis.call('HGET', producers, pid)
  if not state then
    if pseq ~= 0 then return {'GAP', dseq, dtag, '', '0', pseq_s} end
    new_state = epoch_s .. ':0'
  else
    local colon = string.find(state, ':', 1, true)
    local s_epoch = tonumber(string.sub(state, 1, colon - 1))
    local s_seq_s = string.sub(state, colon + 1)
    local s_seq = tonumber(s_seq_s)
    if epoch < s_epoch then
      return {'STALE_EPOCH', dseq, dtag, '', string.sub(state, 1, colon - 1), ''}
    elseif epoch > s_epoch then
      if pseq ~= 0 then return {'EPOCH_SEQ', dseq, dtag, '', '', ''} end
      new_state = epoch_s .. ':0'
    elseif pseq <= s_seq then
      rewrite(producers, pid)
      return {'DUP', dseq, dtag, '', epoch_s, s_seq_s}
    elseif pseq == s_seq + 1 then
      new_state = epoch_s .. ':' .. pseq_s
    else
      return {'GAP', dseq, dtag, '', string.format('%.0f', s_seq + 1), pseq_s}
    end
  end
end
-- 4. Stream-Seq: strictly increasing, compared byte by byte.
if wseq ~= '' and m[9] and not bytes_gt(wseq, m[9]) then
  return {'SEQ', dseq, dtag, '', '', ''}
end
-- 5. Limits (a close alone is always accepted).
local entries = {}
local added = 0
for i = 15, #ARGV, 2 do
  entries[#entries + 1] = ARGV[i]
  entries[#entries + 1] = ARGV[i + 1]
  added = added + #ARGV[i + 1]
end
local seq = tonumber(m[3])
local size = tonumber(m[12]) or 0
if has_body and (seq + #entries / 2 > max_events or size + added > max_bytes) then
  return {'LIMIT', dseq, dtag, '', '', ''}
end

if close then
  entries[#entries + 1] = '.c'
  entries[#entries + 1] = ''
end
local first = seq + 1
local tag, frames
seq, tag, dseq, dtag, added, frames = add_entries(log, seq, m[4] or '', dseq, dtag, entries,
  push_max)
local fields = {'seq', seq, 'tag', tag, 'dseq', dseq, 'dtag', dtag, 'bytes', size + added,
  'updated_at', now_ms(), 'once', once}
if wseq ~= '' then fields[#fields + 1] = 'wseq'; fields[#fields + 1] = wseq end
if close then
  fields[#fields + 1] = 'ended'; fields[#fields + 1] = 'closed'
  if tuple ~= '' then fields[#fields + 1] = 'closed_by'; fields[#fields + 1] = tuple end
end
redis.call('HSET', meta, unpack(fields))
if finalize then redis.call('HDEL', meta, 'pending') end
if new_state then redis.call('HSET', producers, pid, new_state) end
expire_all(KEYS, m[13], m[14], idle)
if seq >= first then publish(channel, cmd, first, seq, tag, close, frames) end
return {'OK', dseq, dtag, close and '1' or '', '', ''}
