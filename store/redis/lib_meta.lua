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
