-- Arm (or replace) one conversation's timer.
-- KEYS: due, rec, meta   ARGV: sender, scheduled_time, body, floor, epoch_candidate
-- Reply: 'version|lost|epoch', one string (a client parses it faster than a four-item array).
local version, epoch, lost = next_version(KEYS[3], tonumber(ARGV[4]), ARGV[5])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], string.format('%d', version) .. '|' .. ARGV[3])
return string.format('%d|%d|', version, lost) .. epoch
