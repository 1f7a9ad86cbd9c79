-- Every timer due at or before the cutoff, without deleting, in one round trip per bucket
-- whatever the count (Rasa's design makes one HGET per timer).
-- The reply is ONE string, a line per timer: sender TAB scheduled_time TAB record. A client
-- parses one string far faster than thousands of protocol items, and no field can hold a tab
-- or a newline: ids refuse control characters and the record's JSON escapes them.
-- KEYS: due, rec   ARGV: cutoff
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES')
local lines = {}
for i = 1, #due, 2 do
  local rec = redis.call('HGET', KEYS[2], due[i])
  if rec then
    lines[#lines + 1] = due[i] .. '\t' .. due[i + 1] .. '\t' .. rec
  end
end
return table.concat(lines, '\n')
