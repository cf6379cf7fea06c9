-- premake5.lua -- tide's build description.
-- Readable by premake5 and by Debian's premake4:
--   premake4 --file=premake5.lua gmake     (the Makefile does this into build/)
-- Configurations: release (-O2, host vector extensions) and asan
-- (AddressSanitizer + UndefinedBehaviorSanitizer, for the C tests).

local P5 = _PREMAKE_VERSION and _PREMAKE_VERSION:sub(1, 1) == "5"

-- `when "release"` scopes the settings that follow, in either premake.
local function when(cfg)
  if P5 then filter("configurations:" .. cfg) else configuration(cfg) end
end
local function always()
  if P5 then filter {} else configuration "*" end
end

local WARN = { "-Wall", "-Wextra", "-Wshadow", "-Wstrict-prototypes",
               "-Wmissing-prototypes", "-Werror" }
local SAN = { "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
              "-fno-sanitize-recover=all" }
local SYSLIBS = { "openblas", "pcre2-8", "yaml", "m", "pthread" }

local function common_c()
  language "C"
  buildoptions { "-std=c11", "-D_GNU_SOURCE" }
  if P5 then symbols "On" else flags { "Symbols" } end
  when "release"
    buildoptions { "-O2", "-march=native" }
    defines { "NDEBUG" }
  when "asan"
    buildoptions { "-O1", "-g" }
    buildoptions(SAN)
    linkoptions(SAN)
  always()
end

if P5 then workspace "tide" else solution "tide" end
  configurations { "release", "asan" }
  location "build"
  objdir "build/obj"
  when "release"
    targetdir "build/release"
  when "asan"
    targetdir "build/asan"
  always()

-- The core: a static library with no Lua headers on its include path.
project "tide"
  kind "StaticLib"
  common_c()
  includedirs { "core/include", "core" }
  buildoptions(WARN)
  files { "core/*.c", "core/*.h", "core/include/tide.h" }

-- One test binary per spec/core/test_*.c; each prints "N passed, N failed".
for _, path in ipairs(os.matchfiles("spec/core/test_*.c")) do
  local name = path:match("([^/]+)%.c$")
  project(name)
    kind "ConsoleApp"
    common_c()
    includedirs { "core/include", "core", "spec/core" }
    buildoptions(WARN)
    files { path }
    links { "tide" }
    links(SYSLIBS)
end

-- Tools: the bench and the demo (random-weight models via tide's writer).
-- spec/tools/common/ holds what they share (the random-model writer).
for _, path in ipairs(os.matchfiles("spec/tools/*.c")) do
  local name = path:match("([^/]+)%.c$")
  project(name)
    kind "ConsoleApp"
    common_c()
    includedirs { "core/include", "spec/tools/common" }
    buildoptions(WARN)
    files { path, "spec/tools/common/*.c", "spec/tools/common/*.h" }
    links { "tide" }
    links(SYSLIBS)
end

-- The `tide` executable: Lua 5.4 + the binding (module tide.core, preloaded)
-- + libtide. The binding sees only tide.h and Lua's headers.
project "tide_exe"
  kind "ConsoleApp"
  targetname "tide"
  common_c()
  includedirs { "core/include", "/usr/include/lua5.4" }
  buildoptions(WARN)
  files { "lua/*.c", "lua/*.h" }
  links { "tide", "lua5.4" }
  links(SYSLIBS)
  linkoptions { "-Wl,-E" }
