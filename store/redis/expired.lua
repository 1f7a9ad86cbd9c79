-- Every timer due at or before the cutoff, without deleting: flat {sender, time, record, ...}.
-- One round trip per bucket whatever the count (Rasa's design makes one HGET per timer).
-- KEYS: due, rec   ARGV: cutoff
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES')
local out = {}
for i = 1, #due, 2 do
  local rec = redis.call('HGET', KEYS[2], due[i])
  if rec then
    out[#out + 1] = due[i]
    out[#out + 1] = due[i + 1]
    out[#out + 1] = rec
  end
end
return out
