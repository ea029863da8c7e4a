-- Add one generation's usage to its user's day (keys.usage_key): 'total' (what a budget
-- counts) and, per provider and model, each kind of token and the generations. A day that
-- already names max_models models puts a new one's under the model '(other)', so a user's
-- day stays bounded whatever the models its requests name.
-- KEYS: the user's day. ARGV: expire at (Unix s), total, provider, model, max_models, the
-- generation's id, then kind and count pairs.
-- The day keeps the id of the generation it counted last ('last'): a spend sent again
-- after its reply was lost (a failover, a cut connection) finds it, and counts nothing
-- twice. Returns 1, or 0 for such a spend.
local key = KEYS[1]
if redis.call('HGET', key, 'last') == ARGV[6] then return 0 end
local provider, model = ARGV[3], ARGV[4]
local max_fields = tonumber(ARGV[5]) * ((#ARGV - 6) / 2) + 2  -- and 'total', 'last'
if redis.call('HEXISTS', key, provider .. '\t' .. model .. '\tgenerations') == 0
   and redis.call('HLEN', key) >= max_fields then
  model = '(other)'
end
redis.call('HINCRBY', key, 'total', ARGV[2])
for i = 7, #ARGV - 1, 2 do
  redis.call('HINCRBY', key, provider .. '\t' .. model .. '\t' .. ARGV[i], ARGV[i + 1])
end
redis.call('HSET', key, 'last', ARGV[6])
redis.call('EXPIREAT', key, ARGV[1])
return 1
