-- Every timer due at or before the cutoff, without deleting, in one round trip per bucket
-- whatever the count (Rasa's design makes one HGET per timer).
-- The reply is ONE string, a line per timer: sender TAB scheduled_time TAB record. A client
-- parses one string far faster than thousands of protocol items, and no field can hold a tab
-- or a newline: ids refuse control characters and the record's JSON escapes them.
-- Records are read with one HMGET per CHUNK senders (a redis.call per timer costs more than
-- the read), and the reply is assembled by one table.concat of its pieces.
-- KEYS: due, rec   ARGV: cutoff
local CHUNK = 1000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES')
local parts = {}
local n = 0
for first = 1, #due, 2 * CHUNK do
  local last = math.min(first + 2 * CHUNK - 1, #due)
  local senders = {}
  for i = first, last, 2 do
    senders[#senders + 1] = due[i]
  end
  local records = redis.call('HMGET', KEYS[2], unpack(senders))
  for j = 1, #senders do
    local rec = records[j]
    if rec then
      local i = first + 2 * (j - 1)
      if n > 0 then
        parts[n + 1] = '\n'
        n = n + 1
      end
      parts[n + 1] = due[i]
      parts[n + 2] = '\t'
      parts[n + 3] = due[i + 1]
      parts[n + 4] = '\t'
      parts[n + 5] = rec
      n = n + 5
    end
  end
end
return table.concat(parts)
