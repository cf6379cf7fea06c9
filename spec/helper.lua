--- spec/helper.lua: shared bits of the busted specs.
local M = {}

--- The fixtures folder, or nil (specs then report a pending reason).
function M.fixtures()
  local dir = os.getenv("TIDE_FIXTURES") or "../shared/fixtures"
  local f = io.open(dir .. "/README.md", "rb")
  if not f then return nil end
  f:close()
  return dir
end

function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- Space-separated integers of a file.
function M.ints(path)
  local t = {}
  for n in M.read(path):gmatch("%-?%d+") do t[#t + 1] = math.tointeger(tonumber(n)) end
  return t
end

--- Whether two logits views (0-based, equal length) hold the same floats;
-- false and the first differing id otherwise.
function M.same_bits(a, b)
  for i = 0, #a - 1 do
    if a[i] ~= b[i] then return false, i end
  end
  return true
end

return M
