-- wrk script: send each request with the next bearer token from a file (one per line).
-- Usage: wrk ... -s benches/tokens.lua URL -- TOKENS_FILE [once|forge]
-- "once": each token is sent at most once; the run stops when the file is used up (so a
-- "fresh token on every request" workload never repeats one). "forge": like once, with one
-- character inside each token's signature changed: a distinct token with a valid shape and kid
-- and a signature that does not verify.
local tokens = {}
local i = 0
local once = false

local function forge(t)
  local at = #t - 20
  local c = t:sub(at, at) == "A" and "B" or "A"
  return t:sub(1, at - 1) .. c .. t:sub(at + 1)
end

function init(args)
  once = args[2] == "once" or args[2] == "forge"
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = args[2] == "forge" and forge(line) or line
  end
  if once then
    -- Only defined when needed: a response callback makes wrk parse every response in Lua.
    -- Stop with a reserve: connections already past this point still send one request each.
    response = function()
      if i >= #tokens - 256 then
        wrk.thread:stop()
      end
    end
  end
end

function request()
  i = i + 1
  local t = tokens[once and math.min(i, #tokens) or (i - 1) % #tokens + 1]
  return wrk.format("GET", wrk.path, { ["Authorization"] = "Bearer " .. t })
end
