-- Create a Durable Stream, or say how an existing one compares (PUT is idempotent).
-- KEYS: log, meta, producers, forks, names (the group's index: a new stream is named there
-- and announced on the group's channel, as every stream is).
-- ARGV: ct, ttl, exp, closed ('1'/''), fork source, fork offset, fork sub-offset,
--   pending ('1': a fork whose inherited entries are still to be copied), idle TTL,
--   channel, publish command, push max, then initial entries as {type, data} pairs.
-- Returns {status, dseq, dtag, closed}: CREATED, SAME (identical configuration),
-- PENDING (a fork being made with this configuration), DIFFERENT, DELETED (a
-- soft-deleted stream's name), OTHER (a stream of this project's events). An error, with
-- nothing written, for a name keys.ds_name never makes (a stream id, or ~ and base64url):
-- it would be announced to every /v1/events connection.
local log, meta = KEYS[1], KEYS[2]
local id = string.match(meta, '}:(.+):meta$')
if not id or not string.find(id, '^~?[A-Za-z0-9_%-]+$')
   or (#id > 64 and string.sub(id, 1, 1) ~= '~') then
  return redis.error_reply('INVALID not a Durable Stream name')
end
local ct, ttl, exp, closed = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local fsrc, foff, fsub, pending = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local idle, channel, cmd, push_max = tonumber(ARGV[9]), ARGV[10], ARGV[11], tonumber(ARGV[12])
local m = redis.call('HMGET', meta, 'kind', 'ct', 'ttl', 'exp', 'ended', 'deleted', 'pending',
  'fsrc', 'foff', 'fsub', 'dseq', 'dtag')
if m[1] then
  if m[1] ~= 'ds' then return {'OTHER', 0, '', ''} end
  if m[6] then return {'DELETED', 0, '', ''} end
  local same = m[2] == ct and (m[3] or '') == ttl and (m[4] or '') == exp
    and (m[5] and '1' or '') == closed and (m[8] or '') == fsrc and (m[9] or '') == foff
    and (m[10] or '') == fsub
  if not same then return {'DIFFERENT', 0, '', ''} end
  if m[7] then return {'PENDING', 0, '', ''} end
  rewrite(meta, 'kind')
  return {'SAME', tonumber(m[11]), m[12] or '', m[5] and '1' or ''}
end
local now = now_ms()
local fields = {'kind', 'ds', 'ct', ct, 'seq', 0, 'tag', '', 'dseq', 0, 'dtag', '', 'bytes', 0,
  'created_at', now, 'updated_at', now}
local function put(k, v) if v ~= '' then fields[#fields + 1] = k; fields[#fields + 1] = v end end
put('ttl', ttl); put('exp', exp); put('fsrc', fsrc); put('foff', foff); put('fsub', fsub)
put('pending', pending)
local entries = {}
for i = 13, #ARGV do entries[#entries + 1] = ARGV[i] end
local seq, tag, dseq, dtag, added = 0, '', 0, '', 0
if pending == '' then
  if closed == '1' then
    entries[#entries + 1] = '.c'
    entries[#entries + 1] = ''
  end
  seq, tag, dseq, dtag, added = add_entries(log, 0, '', 0, '', entries, push_max)
  fields[6] = seq; fields[8] = tag; fields[10] = dseq; fields[12] = dtag; fields[14] = added
  if closed == '1' then put('ended', 'closed') end
end
redis.call('HSET', meta, unpack(fields))
expire_all({KEYS[1], KEYS[2], KEYS[3], KEYS[4]}, ttl, exp, idle)
redis.call('ZADD', KEYS[5], 0, id)
if channel ~= '' then
  local group, db = string.match(channel, '^(.-}):.+:push:(%d+)$')
  redis.call(cmd, group .. ':created:' .. db, id)
end
return {'CREATED', dseq, dtag, closed}
