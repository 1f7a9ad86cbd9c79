-- Release the leases of fired claims.   KEYS: lease, leased   ARGV: fire_id, ...
for i = 1, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
end
return #ARGV
