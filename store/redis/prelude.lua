-- Shared by every timerlab script (prepended at load time).
-- Keys of one bucket all share one hash tag, so each script touches exactly one cluster slot.
-- Every value a script compares (times, versions, epochs) arrives through ARGV: no TIME, no TTLs,
-- so the simulator's embedded Redis stays deterministic.

-- The bucket's epoch and version counter. A missing epoch means this Redis never saw the bucket
-- (or lost it): adopt the caller's candidate. A counter below the caller's floor means Redis lost
-- writes (restart without persistence, or an old snapshot): never hand out a version twice, and
-- report how many versions were lost.
local function sync_meta(meta, floor, epoch_candidate)
  local m = redis.call('HMGET', meta, 'seq', 'epoch')
  local seq = tonumber(m[1]) or 0
  local epoch = m[2]
  local lost = 0
  if not epoch then
    epoch = epoch_candidate
    redis.call('HSET', meta, 'epoch', epoch)
  end
  if seq < floor then
    lost = floor - seq
    seq = floor
    redis.call('HSET', meta, 'seq', string.format('%d', seq))
  end
  return seq, epoch, lost
end

local function next_version(meta, floor, epoch_candidate)
  local seq, epoch, lost = sync_meta(meta, floor, epoch_candidate)
  seq = seq + 1
  redis.call('HSET', meta, 'seq', string.format('%d', seq))
  return seq, epoch, lost
end

local function record_version(rec)
  return tonumber(string.match(rec, '^(%d+)|'))
end

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
