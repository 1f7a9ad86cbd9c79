-- Delete one conversation's timer unconditionally and leave a versioned tombstone.
-- KEYS: due, rec, meta, tomb   ARGV: sender, floor, epoch_candidate, tombstone_limit
-- Reply: 'existed|version|lost|epoch', one string, as store.lua's.
local existed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local version, epoch, lost = next_version(KEYS[3], tonumber(ARGV[2]), ARGV[3])
add_tombstone(KEYS[3], KEYS[4], ARGV[1], version, tonumber(ARGV[4]))
return string.format('%d|%d|%d|', existed, version, lost) .. epoch
