-- One conversation's timer: {scheduled_time, record} or {} when none.
-- KEYS: due, rec   ARGV: sender
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  return {}
end
return {score, redis.call('HGET', KEYS[2], ARGV[1])}
