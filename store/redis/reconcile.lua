-- Merge one sender's outage state back, unless Redis holds a newer write for that sender.
-- "Newer" means a version above the caller's horizon (the newest version it saw before the
-- outage), or any write at all when Redis was reset since (its epoch differs). Claims are not
-- writes: a timer that another pod fired during the outage does not block the merge.
-- KEYS: due, rec, meta, tomb, merged
-- ARGV: sender, horizon_epoch, horizon_seq, op ('set'|'del'), scheduled_time, body,
--       floor, epoch_candidate, tombstone_limit, unacked_time, unacked_cancel, own_version,
--       instance
-- instance: the id of the write being merged. A merge whose reply was lost is retried; if its
-- first attempt landed, the instance is in `merged`, and it is never armed a second time: it is
-- either still there (the merge is done) or it has fired or been replaced since.
-- unacked_*: this pod's own write that timed out as the outage began. If the newest write in
-- Redis is exactly that one, it landed after all; it is ours, so it does not win.
-- Returns {applied, version, epoch, seq, lost, competing_version, verified}
local sender = ARGV[1]
local instance = ARGV[13]
if instance ~= '' then
  local merged = redis.call('ZSCORE', KEYS[5], instance)
  if merged then
    local rec = redis.call('HGET', KEYS[2], sender)
    local seq, epoch, lost = sync_meta(KEYS[3], tonumber(ARGV[7]), ARGV[8])
    if rec and string.match(rec, '^%d+|([^|]*)|') == instance then
      return {1, record_version(rec), epoch, seq, lost, 0, 1}
    end
    return {0, 0, epoch, seq, lost, tonumber(merged), 1}
  end
end
local m = redis.call('HMGET', KEYS[3], 'epoch', 'tfloor')
local current = 0
local rec = redis.call('HGET', KEYS[2], sender)
if rec then
  current = record_version(rec)
end
local tomb = redis.call('ZSCORE', KEYS[4], sender)
if tomb and tonumber(tomb) > current then
  current = tonumber(tomb)
end
local newer
if m[1] and m[1] == ARGV[2] then
  newer = current > tonumber(ARGV[3])
else
  newer = current > 0
end
if newer and ARGV[10] ~= '' and rec and record_version(rec) == current then
  local score = redis.call('ZSCORE', KEYS[1], sender)
  newer = not (score and tonumber(score) == tonumber(ARGV[10]))
elseif newer and ARGV[11] == '1' and not rec and tomb and tonumber(tomb) == current then
  newer = false
end
-- own_version: the newest version this pod itself put there for the sender while merging this
-- outage back (an earlier attempt that failed half way). Our own write is never "newer".
if newer and tonumber(ARGV[12]) == current then
  newer = false
end
local verified = 1
if current == 0 and m[1] == ARGV[2] and tonumber(m[2] or '0') > tonumber(ARGV[3]) then
  verified = 0
end
if newer then
  local seq, epoch, lost = sync_meta(KEYS[3], tonumber(ARGV[7]), ARGV[8])
  return {0, 0, epoch, seq, lost, current, verified}
end
local version, epoch, lost = next_version(KEYS[3], tonumber(ARGV[7]), ARGV[8])
if ARGV[4] == 'set' then
  redis.call('ZADD', KEYS[1], ARGV[5], sender)
  redis.call('HSET', KEYS[2], sender, string.format('%d', version) .. '|' .. ARGV[6])
  if instance ~= '' then
    redis.call('ZADD', KEYS[5], version, instance)
    local limit = tonumber(ARGV[9])
    local n = redis.call('ZCARD', KEYS[5])
    if n > limit then
      redis.call('ZREMRANGEBYRANK', KEYS[5], 0, n - limit - 1)
    end
  end
else
  redis.call('ZREM', KEYS[1], sender)
  redis.call('HDEL', KEYS[2], sender)
  add_tombstone(KEYS[3], KEYS[4], sender, version, tonumber(ARGV[9]))
end
return {1, version, epoch, version, lost, current, verified}
