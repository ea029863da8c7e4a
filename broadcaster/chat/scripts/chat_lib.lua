-- What the chat's scripts share (each is this file, then its own).
-- fill(history, positions, first): the messages of ARGV from index `first` on (each its
-- id, then its JSON) pushed onto the history list in order, each id's index noted, in
-- batches (unpack's stack is bounded: a few thousand values).
local function fill(history, positions, first)
  local batch = 500
  local i = first
  local index = redis.call('LLEN', history)
  while i <= #ARGV do
    local values, places = {}, {}
    local last = math.min(#ARGV, i + 2 * batch - 1)
    for j = i, last, 2 do
      values[#values + 1] = ARGV[j + 1]
      places[#places + 1] = ARGV[j]
      places[#places + 1] = index
      index = index + 1
    end
    redis.call('RPUSH', history, unpack(values))
    redis.call('HSET', positions, unpack(places))
    i = last + 1
  end
end
