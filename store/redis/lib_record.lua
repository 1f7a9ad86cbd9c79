local function record_version(rec)
  return tonumber(string.match(rec, '^(%d+)|'))
end
