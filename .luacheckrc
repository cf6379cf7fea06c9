-- luacheck configuration (Debian lua-check): Lua 5.4, busted globals in specs.
std = "lua54"
max_line_length = 120
files["spec"] = { std = "+busted" }
exclude_files = { "build" }
