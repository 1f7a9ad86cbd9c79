-- Claim up to `limit` due timers, oldest first, in one atomic step.
-- With a lease (ARGV[2] not empty), each claimed timer moves to the lease set until `complete`
-- releases it; a lease that lapses (score <= now) is re-claimed here first, with its fire id
-- unchanged and the attempt counted up. Without a lease, claiming deletes (at-most-once).
-- The fire id is the instance id the writer put in the record ("version|instance|json").
-- Lease entries: fire_id -> "attempt|scheduled_time|len(sender)|sender" .. record.
-- KEYS: due, rec, meta, lease, leased   ARGV: now, lease_until, limit, floor, epoch_candidate
-- Returns {epoch, seq, lost, remaining_due, oldest_due, fire_id, entry, fire_id, entry, ...}
local now, lease_until, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local leasing = lease_until ~= ''
local seq, epoch, lost = sync_meta(KEYS[3], tonumber(ARGV[4]), ARGV[5])
local out = {}
local claimed, lapsed_count, due_count = 0, 0, 0
if leasing then
  local lapsed = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, limit)
  lapsed_count = #lapsed
  for _, fire_id in ipairs(lapsed) do
    local entry = redis.call('HGET', KEYS[5], fire_id)
    if entry then
      local attempt, rest = string.match(entry, '^(%d+)|(.*)$')
      entry = string.format('%d', tonumber(attempt) + 1) .. '|' .. rest
      redis.call('HSET', KEYS[5], fire_id, entry)
      redis.call('ZADD', KEYS[4], lease_until, fire_id)
      out[#out + 1] = fire_id
      out[#out + 1] = entry
      claimed = claimed + 1
    else
      redis.call('ZREM', KEYS[4], fire_id)
    end
  end
end
local room = limit - claimed
if room > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, room)
  due_count = #due / 2
  for i = 1, #due, 2 do
    local sender, score = due[i], due[i + 1]
    local rec = redis.call('HGET', KEYS[2], sender)
    redis.call('ZREM', KEYS[1], sender)
    if rec then
      redis.call('HDEL', KEYS[2], sender)
      local fire_id = string.match(rec, '^%d+|([^|]*)|')
      local entry = '1|' .. score .. '|' .. string.format('%d', #sender) .. '|' .. sender .. rec
      if leasing then
        redis.call('HSET', KEYS[5], fire_id, entry)
        redis.call('ZADD', KEYS[4], lease_until, fire_id)
      end
      out[#out + 1] = fire_id
      out[#out + 1] = entry
    end
  end
end
-- What is left: counted only when a batch came back full (otherwise nothing due is left),
-- so the common empty poll costs three commands.
local remaining, oldest = 0, ''
if room <= 0 or due_count == room then
  remaining = redis.call('ZCOUNT', KEYS[1], '-inf', now)
end
if leasing and lapsed_count == limit then
  remaining = remaining + redis.call('ZCOUNT', KEYS[4], '-inf', now)
end
if remaining > 0 then
  local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if head[2] and tonumber(head[2]) <= tonumber(now) then
    oldest = head[2]
  end
end
local result = {epoch, seq, lost, remaining, oldest}
for i = 1, #out do
  result[#result + 1] = out[i]
end
return result
