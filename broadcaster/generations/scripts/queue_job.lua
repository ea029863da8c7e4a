-- Queue a generation's job and end its start, in one step: XADD to its provider's queue
-- and drop it from the set of starts under way (a start that never gets here is ended by
-- the front-ends' sweep, overdue.py). Both keys share the {jobs} tag.
-- KEYS: the queue, the starting set. ARGV: generation id.
redis.call('XADD', KEYS[1], '*', 'id', ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
