#!/bin/sh
# check-layers.sh — enforces docs/DESIGN.md's picture of the library:
#  1. every src/ file lives in a layer folder listed in src/LAYERS and includes only
#     headers of its own layer, of the layers LAYERS lets it use, or include/fieldlm.h;
#  2. no include cycle between the library's files;
#  3. no call cycle between the library's source files: from the built objects' symbol
#     tables (nm), a.c depends on b.c when a.o uses a symbol b.o defines; any cycle is listed.
#  4. the user-facing commands in app/ (APP_PUBLIC below, and the files of APP_PUBLIC_DIRS) include
#     only fieldlm.h and app/ headers, and those app/ headers (transitively) only fieldlm.h, system
#     headers and such app/ headers. A quoted include is looked up beside the including file, then in app/.
# Usage: tools/check-layers.sh [BUILD_DIR]   (step 3 runs when BUILD_DIR/src has objects)
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build}
APP_PUBLIC="run chat tokenize template convert serve"   # detokenize lives in cmd_tokenize.c
APP_PUBLIC_DIRS="app/serve"   # every .c file in these folders too (the server's modules)
status=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# -- 1. layers and includes --------------------------------------------------------
grep -v '^[[:space:]]*#' src/LAYERS | awk 'NF' >"$tmp/layers"
find src -name '*.[ch]' | sort >"$tmp/files"
for f in $(cat "$tmp/files"); do
  grep -o '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^"]*"' "$f" | sed 's/.*"\(.*\)"/\1/' | while read -r inc; do
    echo "$f $inc"
  done
done >"$tmp/includes"
awk -v LAYERS="$tmp/layers" '
  BEGIN { while ((getline line < LAYERS) > 0) { n = split(line, w, /[[:space:]]+/); L[w[1]] = 1
          for (i = 2; i <= n; i++) if (w[i] != "") A[w[1] SUBSEP w[i]] = 1 } }
  { file = $1; inc = $2; split(file, p, "/")
    if (!(p[2] in L) || p[3] == "") { printf "layers: %s is not in a layer folder listed in src/LAYERS\n", file; bad = 1; next }
    if (inc == "fieldlm.h") next
    if (index(inc, "/") == 0) { printf "layers: %s includes \"%s\": name the layer (\"LAYER/%s\")\n", file, inc, inc; bad = 1; next }
    split(inc, q, "/")
    if (!(q[1] in L)) { printf "layers: %s includes \"%s\": no layer %s\n", file, inc, q[1]; bad = 1; next }
    if (q[1] != p[2] && !((p[2] SUBSEP q[1]) in A)) {
      printf "layers: %s (layer %s) includes %s: layer %s may not use %s (src/LAYERS)\n", file, p[2], inc, p[2], q[1]; bad = 1 }
  }
  END { exit bad }' "$tmp/includes" || status=1

# every file in a layer folder, includes or not
for f in $(cat "$tmp/files"); do
  l=${f#src/}; case "$l" in */*) l=${l%%/*} ;; *) l="" ;; esac
  if [ -z "$l" ] || ! awk -v L="$l" '$1 == L { found = 1 } END { exit !found }' "$tmp/layers"; then
    grep -q "^$f " "$tmp/includes" || { echo "layers: $f is not in a layer folder listed in src/LAYERS"; status=1; }
  fi
done

# -- 2. include cycles between files ---------------------------------------------
awk '$2 != "fieldlm.h" { from = $1; sub(/^src\//, "", from); print from, $2 }' "$tmp/includes" | sort -u >"$tmp/inc_edges"
find_cycles() { # edges file, what
  awk -v WHAT="$2" '
    { adj[$1] = adj[$1] " " $2; nodes[$1] = 1; nodes[$2] = 1 }
    function dfs(v,   i, n, w, k, cyc) {
      state[v] = 1; stack[++sp] = v
      n = split(adj[v], w, " ")
      for (i = 1; i <= n; i++) {
        if (state[w[i]] == 1) {
          cyc = w[i]; for (k = sp; k >= 1 && stack[k] != w[i]; k--) ; for (k = k + 1; k <= sp; k++) cyc = cyc " -> " stack[k]
          cyc = cyc " -> " w[i]; printf "%s cycle: %s\n", WHAT, cyc; found = 1
        } else if (!state[w[i]]) dfs(w[i])
      }
      sp--; state[v] = 2
    }
    END { for (v in nodes) if (!state[v]) dfs(v); exit found }' "$1"
}
find_cycles "$tmp/inc_edges" include || status=1

# -- 3. call cycles between modules (from the objects) -------------------------------
if ls "$BUILD"/src/*/*.o >/dev/null 2>&1; then
  for o in "$BUILD"/src/*/*.o; do
    m=${o#"$BUILD"/src/}; m=${m%.o}
    nm "$o" | awk -v M="$m" '$1 == "U" { print "U", M, $2 } NF == 3 && $2 ~ /^[TDBRVW]$/ { print "D", M, $3 }'
  done >"$tmp/syms"
  awk '$1 == "D" { def[$3] = $2 } $1 == "U" { use[++n] = $2 " " $3 }
       END { for (i = 1; i <= n; i++) { split(use[i], u, " "); if ((u[2] in def) && def[u[2]] != u[1]) print u[1], def[u[2]] } }' \
    "$tmp/syms" | sort -u >"$tmp/call_edges"
  find_cycles "$tmp/call_edges" call || status=1
else
  echo "layers: no objects under $BUILD/src: call cycles not checked (build first)"
fi

# -- 4. user-facing commands on the public API only -----------------------------------
# A user-facing command includes fieldlm.h, system headers (<...>) and app/ headers;
# every app/ header it reaches, transitively, obeys the same rule (so cli_dev.h, which
# includes the library's internal headers, is out of their reach).
quoted_includes() { grep -o '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^"]*"' "$1" | sed 's/.*"\(.*\)"/\1/'; }
public_files=""
for c in $APP_PUBLIC; do public_files="$public_files app/cmd_$c.c"; done
for d in $APP_PUBLIC_DIRS; do
  for f in "$d"/*.c; do [ -f "$f" ] && public_files="$public_files $f"; done
done
for f in $public_files; do
  [ -f "$f" ] || { echo "layers: $f missing"; status=1; continue; }
  todo="$f"; seen=" "
  while [ -n "$todo" ]; do
    set -- $todo; cur=$1; shift; todo="$*"
    case "$seen" in *" $cur "*) continue ;; esac
    seen="$seen$cur "
    for inc in $(quoted_includes "$cur"); do
      if [ "$inc" = fieldlm.h ]; then continue; fi
      dir=$(dirname "$cur")
      case "$dir/$inc" in
        app/*) if [ -f "$dir/$inc" ] && [ "${inc#*..}" = "$inc" ]; then todo="$todo $dir/$inc"; continue; fi ;;
      esac
      if [ -f "app/$inc" ] && [ "${inc#*..}" = "$inc" ]; then todo="$todo app/$inc"; continue; fi
      if [ "$cur" = "$f" ]; then
        echo "layers: $f includes $inc (user-facing commands use only fieldlm.h and app/ headers)"
      else
        echo "layers: $f includes $cur, which includes $inc (an app/ header a user-facing command includes uses only fieldlm.h, system headers and such app/ headers)"
      fi
      status=1
    done
  done
done

[ "$status" = 0 ] && echo "layers: ok ($(wc -l <"$tmp/files") files, $(wc -l <"$tmp/inc_edges") include edges, no upward include, no cycle)"
exit $status
