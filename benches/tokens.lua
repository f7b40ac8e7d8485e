-- wrk script: send each request with the next bearer token from a file (one per line).
-- Usage: wrk ... -s benches/tokens.lua URL -- TOKENS_FILE
local tokens = {}
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
end

function request()
  i = i + 1
  local t = tokens[(i - 1) % #tokens + 1]
  return wrk.format("GET", wrk.path, { ["Authorization"] = "Bearer " .. t })
end
