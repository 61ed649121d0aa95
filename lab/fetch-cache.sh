#!/usr/bin/env bash
# Fill lab/cache/ with the installers listed in lab/cache/cache.lock and check each SHA-256 pin.
#   lab/fetch-cache.sh          download what is missing; refuse any file whose hash differs from its pin
#   lab/fetch-cache.sh --pin    additionally record the hash of files whose pin is '-' (verify them first!)
set -euo pipefail
cd "$(dirname "$0")/cache"
pin=0
[ "${1:-}" = "--pin" ] && pin=1
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
while read -r name sha url; do
  case "$name" in ''|'#'*) continue ;; esac
  # HTTPS only, redirects included: a pinned hash catches a swapped file, but plain HTTP still
  # tells the network what the lab installs and lets it serve anything until the pin is checked.
  case "$url" in
    https://*) ;;
    *) echo "error: $name: $url is not an https:// URL; fix cache.lock (plain HTTP is refused)" >&2; exit 1 ;;
  esac
  [ -f "$name" ] || { echo "fetching $name"; curl -fsSL --proto '=https' --proto-redir '=https' -o "$name" "$url"; }
  actual=$(sha256sum "$name" | cut -d' ' -f1)
  if [ "$sha" = "-" ]; then
    if [ "$pin" = 1 ]; then
      echo "pinning $name $actual"
      sed -i "s|^$name\(\s\+\)-\(\s\+\)|$name\1$actual\2|" cache.lock
    else
      echo "error: $name has no pin in cache.lock; verify it, then run lab/fetch-cache.sh --pin" >&2; exit 1
    fi
  elif [ "$actual" != "$sha" ]; then
    echo "error: $name SHA-256 $actual does not match pin $sha; delete it and fetch again" >&2; exit 1
  else
    echo "ok $name"
  fi
done < cache.lock
