-- Put dead deliveries back into the deliveries stream: the same webhook-id and body, and
-- a fresh retry schedule (it starts at the new entry's time).
-- KEYS: dead, deliveries. ARGV: dead-letter entry ids. Returns the ids put back.
local put = {}
local kept = {id = true, type = true, stream = true, to = true, body = true}
for i = 1, #ARGV do
  local found = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if #found == 1 then
    local fields, out = found[1][2], {}
    for j = 1, #fields, 2 do
      if kept[fields[j]] then
        out[#out + 1] = fields[j]
        out[#out + 1] = fields[j + 1]
      end
    end
    redis.call('XADD', KEYS[2], '*', unpack(out))
    redis.call('XDEL', KEYS[1], ARGV[i])
    put[#put + 1] = ARGV[i]
  end
end
return put
