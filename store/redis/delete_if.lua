-- Conditional delete (the documented claim): only while the stored time equals ARGV[2] exactly.
-- Scores are doubles and ARGV[2] is the shortest repr of a double, so tonumber() on both sides
-- compares the same 64-bit value: no tolerance, and two instances a microsecond apart differ.
-- KEYS: due, rec   ARGV: sender, expected_scheduled_time
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
