-- Add one generation's usage to its user's day (keys.usage_key): 'total' (what a budget
-- counts) and, per provider and model, each kind of token and the generations. A day that
-- already names max_models models puts a new one's under the model '(other)', so a user's
-- day stays bounded whatever the models its requests name.
-- KEYS: the user's day. ARGV: expire at (Unix s), total, provider, model, max_models, then
-- kind and count pairs.
local key = KEYS[1]
local provider, model = ARGV[3], ARGV[4]
local max_fields = tonumber(ARGV[5]) * ((#ARGV - 5) / 2) + 1
if redis.call('HEXISTS', key, provider .. '\t' .. model .. '\tgenerations') == 0
   and redis.call('HLEN', key) >= max_fields then
  model = '(other)'
end
redis.call('HINCRBY', key, 'total', ARGV[2])
for i = 6, #ARGV - 1, 2 do
  redis.call('HINCRBY', key, provider .. '\t' .. model .. '\t' .. ARGV[i], ARGV[i + 1])
end
redis.call('EXPIREAT', key, ARGV[1])
return 1
