-- Settle one delivery for good: delivered, or dead (copied to the dead-letter list with
-- its attempts and the last failure first). Either way it leaves the deliveries.
-- KEYS: deliveries, dead. ARGV: group, entry id, 'done' or 'dead', attempts, reason,
-- the dead-letter list's MAXLEN. Returns 1 if the entry was still there.
local found = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if ARGV[3] == 'dead' and #found == 1 then
  local t = redis.call('TIME')
  local now = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
  local fields = found[1][2]
  fields[#fields + 1] = 'attempts'
  fields[#fields + 1] = ARGV[4]
  fields[#fields + 1] = 'reason'
  fields[#fields + 1] = ARGV[5]
  fields[#fields + 1] = 'queued'
  fields[#fields + 1] = ARGV[2]
  fields[#fields + 1] = 'failed_at'
  fields[#fields + 1] = now
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', unpack(fields))
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return #found
