-- Cancel tombstones: member sender, score version. Only the newest `limit` are kept; `tfloor`
-- remembers the newest version ever dropped, so reconciliation knows what it can no longer see.
local function add_tombstone(meta, tomb, sender, version, limit)
  redis.call('ZADD', tomb, version, sender)
  local n = redis.call('ZCARD', tomb)
  if n > limit then
    local dropped = redis.call('ZRANGE', tomb, 0, n - limit - 1, 'WITHSCORES')
    redis.call('HSET', meta, 'tfloor', dropped[#dropped])
    redis.call('ZREMRANGEBYRANK', tomb, 0, n - limit - 1)
  end
end
