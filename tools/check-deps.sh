#!/bin/sh
# Checks the Debian packages the build needs; installs them when running as root,
# otherwise prints the exact apt-get line and fails.
missing=""
have_header() { printf '#include <%s>\n' "$1" | ${CC:-gcc} -E -x c - >/dev/null 2>&1; }
have_header utf8proc.h || missing="$missing libutf8proc-dev"
have_header zlib.h || missing="$missing zlib1g-dev"
# fieldlm serve: HTTP (libmicrohttpd) and JSON for the network input (json-c)
have_header microhttpd.h || missing="$missing libmicrohttpd-dev"
have_header json-c/json.h || missing="$missing libjson-c-dev"
printf '#define PCRE2_CODE_UNIT_WIDTH 8\n#include <pcre2.h>\n' | ${CC:-gcc} -E -x c - >/dev/null 2>&1 || missing="$missing libpcre2-dev"
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing missing packages:$missing"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing) >/dev/null || {
    echo "apt-get install failed; run: apt-get update && apt-get install -y$missing" >&2; exit 1; }
  exit 0
fi
echo "missing build dependencies; run as root:" >&2
echo "  apt-get update && apt-get install -y$missing" >&2
exit 1
