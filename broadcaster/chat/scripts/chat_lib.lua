-- What the chat's scripts share (each is this file, then its own).
-- fill(history, positions, model, first): the messages of ARGV from index `first` on
-- (each its id, its JSON, then its model turns' JSON) pushed onto the history list in
-- order, each id's index noted, and their model turns onto the model list beside it
-- (`model` false: the model list is not kept in step, and gets none), in batches
-- (unpack's stack is bounded: a few thousand values).
local function fill(history, positions, model, first)
  local batch = 500
  local i = first
  local index = redis.call('LLEN', history)
  while i <= #ARGV do
    local values, places, turns = {}, {}, {}
    local last = math.min(#ARGV, i + 3 * batch - 1)
    for j = i, last, 3 do
      values[#values + 1] = ARGV[j + 1]
      turns[#turns + 1] = ARGV[j + 2]
      places[#places + 1] = ARGV[j]
      places[#places + 1] = index
      index = index + 1
    end
    redis.call('RPUSH', history, unpack(values))
    redis.call('HSET', positions, unpack(places))
    if model then redis.call('RPUSH', model, unpack(turns)) end
    i = last + 1
  end
end

-- in_step(history, model): whether the model list holds an entry for each message of the
-- history list (a record written before it was kept has none).
local function in_step(history, model)
  return redis.call('LLEN', history) == redis.call('LLEN', model)
end
