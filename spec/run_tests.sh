#!/bin/sh
# run_tests.sh -- runs every test and prints one summary line
# "N passed, N failed": the C harness's counts (release and ASan+UBSan
# builds) plus busted's, plus the layering check. Called by `make test`.
cd "$(dirname "$0")/.." || exit 1
passed=0
failed=0
add() { passed=$((passed + $1)); failed=$((failed + $2)); }

# Layering: core/ never includes Lua headers.
if grep -rnE '#[[:space:]]*include[[:space:]]*[<"](lua|lauxlib|lualib)' core/; then
  echo "FAIL layering: core/ includes a Lua header"; add 0 1
else
  add 1 0
fi

# The public header compiles alone, as C and as C++.
for lang in c c++; do
  if printf '#include "tide.h"\n' | ${CC:-gcc} -x $lang -fsyntax-only -Wall -Wextra -Werror -Icore/include - ; then
    add 1 0
  else
    echo "FAIL tide.h does not compile alone as $lang"; add 0 1
  fi
done

# Lua style: luacheck over the package, specs and tools (.luacheckrc).
if command -v luacheck >/dev/null 2>&1; then
  if out=$(luacheck --no-color -q lua spec recipes 2>&1); then add 1 0
  else printf '%s\n' "$out" | tail -n 20; echo "FAIL luacheck"; add 0 1; fi
else
  echo "skip luacheck: not installed (Debian lua-check)"
fi

run_c() { # $1 = binary
  out=$(timeout 600 "$1" 2>&1)
  rc=$?
  line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
  printf '%s\n' "$out" | grep -E '^(FAIL|skip)|Sanitizer|runtime error' | head -n 40
  if [ -z "$line" ]; then
    echo "FAIL $1: exited $rc without a summary line"; add 0 1; return
  fi
  p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
  echo "$1: $line"
  add "$p" "$f"
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "FAIL $1: exited $rc"; add 0 1
  fi
}

for cfg in release asan; do
  for t in build/$cfg/test_*; do
    [ -x "$t" ] && run_c "$t"
  done
done

# busted specs (Lua), if any.
if ls spec/*/*_spec.lua >/dev/null 2>&1 && [ -x build/release/tide ]; then
  out=$(timeout 600 build/release/tide /usr/bin/busted -o TAP 2>&1)
  printf '%s\n' "$out" | grep -E '^not ok' | head -n 40
  p=$(printf '%s\n' "$out" | grep -cE '^ok ')
  f=$(printf '%s\n' "$out" | grep -cE '^not ok ')
  echo "busted: $p passed, $f failed"
  add "$p" "$f"
  if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then echo "FAIL busted ran no test"; add 0 1; fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
