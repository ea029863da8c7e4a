-- A lock's release (core/lock.py): delete KEYS[1] only while it names its holder ARGV[1].
-- Checked and deleted in one step, so a holder whose lock expired and was taken by
-- another never deletes the other's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
