-- Check that a stream may be forked at an offset and, for a Durable Stream, count the
-- fork among its forks (its deletion is then soft while the fork lives). Runs on the
-- source's slot; the fork lives on its own.
-- KEYS: source log, meta, forks. ARGV: fork name, anchor seq, anchor tag, idle TTL.
-- Returns {status, kind, ct, ttl, exp, dseq, dtag}: OK, NOSTREAM, DELETED, BEYOND (the
-- offset is past the tail), BADOFFSET (no such offset in this stream's history).
local log, meta, forks = KEYS[1], KEYS[2], KEYS[3]
local at = tonumber(ARGV[2])
local m = redis.call('HMGET', meta, 'kind', 'ct', 'ttl', 'exp', 'dseq', 'dtag', 'deleted',
  'pending', 'seq', 'tag')
if not m[1] or m[8] then return {'NOSTREAM', '', '', '', '', 0, ''} end
if m[7] then return {'DELETED', '', '', '', '', 0, ''} end
local dseq, dtag = tonumber(m[5] or m[9]), m[6] or m[10] or ''
local ct = m[2] or 'application/json'
if at > dseq then return {'BEYOND', m[1], ct, '', '', dseq, dtag} end
if at > 0 then
  local e = redis.call('XRANGE', log, at .. '-0', at .. '-0')
  local tag = ''
  if e[1] then
    local f = e[1][2]
    for j = 1, #f, 2 do if f[j] == 'h' then tag = f[j + 1] end end
  end
  if tag ~= ARGV[3] then return {'BADOFFSET', m[1], ct, '', '', dseq, dtag} end
end
if m[1] == 'ds' then
  redis.call('SADD', forks, ARGV[1])
  expire_all({forks}, m[3], m[4], tonumber(ARGV[4]))
end
return {'OK', m[1], ct, m[3] or '', m[4] or '', dseq, dtag}
