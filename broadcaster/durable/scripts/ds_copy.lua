-- Copy inherited entries into a fork being made (copy-on-fork): the same types and data
-- after the same history give the same seqs and tags, so the fork's offsets are the
-- source's up to the fork point. KEYS: log, meta. ARGV: idle TTL, then {type, data} pairs.
local log, meta = KEYS[1], KEYS[2]
local m = redis.call('HMGET', meta, 'pending', 'seq', 'tag', 'dseq', 'dtag', 'bytes', 'ttl', 'exp')
if not m[1] then return 'NOSTREAM' end
local entries = {}
for i = 2, #ARGV do entries[#entries + 1] = ARGV[i] end
local seq, tag, dseq, dtag, added = add_entries(log, tonumber(m[2]), m[3] or '',
  tonumber(m[4]), m[5] or '', entries, 0)
redis.call('HSET', meta, 'seq', seq, 'tag', tag, 'dseq', dseq, 'dtag', dtag,
  'bytes', tonumber(m[6]) + added)
expire_all(KEYS, m[7], m[8], tonumber(ARGV[1]))
return 'OK'
