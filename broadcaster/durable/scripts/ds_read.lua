-- Read a stream as a Durable Stream: its metadata, the history tag at the reader's
-- offset, and the entries after it (up to a count and about a byte budget), in one
-- consistent step; with a sliding TTL, the read renews it (not for HEAD).
-- KEYS: log, meta, producers, forks. ARGV: after seq, count (0: none), byte budget, touch.
-- Returns {kind, ct, seq, tag, dseq, dtag, ended, deleted, pending, ttl, exp, tag at
-- 'after', then seq, type, data, tag for each entry}; kind '' when there is no stream.
local log, meta = KEYS[1], KEYS[2]
local after, count, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local m = redis.call('HMGET', meta, 'kind', 'ct', 'seq', 'tag', 'dseq', 'dtag', 'ended',
  'deleted', 'pending', 'ttl', 'exp')
local out = {}
for i = 1, 11 do out[i] = m[i] or '' end
if not m[1] then return out end
if ARGV[4] == '1' and m[10] and not m[8] and not m[9] then
  for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, tonumber(m[10]) * 1000) end
end
out[12] = ''
if after > 0 then
  local at = redis.call('XRANGE', log, after .. '-0', after .. '-0')
  if at[1] then
    local f = at[1][2]
    for j = 1, #f, 2 do if f[j] == 'h' then out[12] = f[j + 1] end end
  end
end
-- The entries are fetched in batches sized by the budget left and the entries' average
-- size so far: one XRANGE of 'count' would copy them all into Lua to keep a few (160
-- entries of 64 KiB for the 4 a page keeps, page after page).
if count > 0 then
  local size, n, from, want = 0, 0, after + 1, 1
  while n < count and size < budget do
    local batch = redis.call('XRANGE', log, from .. '-0', '+', 'COUNT', want)
    for _, e in ipairs(batch) do
      if size >= budget then break end
      local etype, data, tag = '', '', ''
      local f = e[2]
      for j = 1, #f, 2 do
        if f[j] == 't' then etype = f[j + 1]
        elseif f[j] == 'd' then data = f[j + 1]
        elseif f[j] == 'h' then tag = f[j + 1] end
      end
      local seq = string.match(e[1], '^(%d+)')
      out[#out + 1] = seq
      out[#out + 1] = etype
      out[#out + 1] = data
      out[#out + 1] = tag
      size = size + #data
      n = n + 1
      from = tonumber(seq) + 1
    end
    if #batch < want then break end
    want = math.min(count - n, math.floor((budget - size) / math.max(size / n, 1)) + 1)
  end
end
return out
