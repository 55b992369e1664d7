#!/usr/bin/env bash
# The device tool carries the tracked tree (plus carry) and refuses above 64 MiB; the result archives under studies/
# and docs/results/ alone are larger, and no GPU call reads them (a campaign call reads its carry under tmp/).
#   bash scripts/device_tree.sh aside   # before a device call: move studies/ and docs/results/ to tmp/device-aside/
#   bash scripts/device_tree.sh back    # right after it: move them back (git status is clean again)
set -euo pipefail
cd "$(dirname "$0")/.."
ASIDE=tmp/device-aside
PATHS=(studies docs/results)

case "${1:-}" in
  aside)
    [ -e "$ASIDE" ] && { echo "device_tree: $ASIDE exists (a call's tree still aside?): run 'back' first" >&2; exit 1; }
    mkdir -p "$ASIDE/docs"
    for p in "${PATHS[@]}"; do mv "$p" "$ASIDE/$p"; done
    echo "moved ${PATHS[*]} to $ASIDE; tracked tree now $(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) bytes"
    ;;
  back)
    [ -d "$ASIDE" ] || { echo "device_tree: nothing aside ($ASIDE missing)" >&2; exit 1; }
    for p in "${PATHS[@]}"; do
      [ -e "$p" ] && { echo "device_tree: $p exists here and in $ASIDE; move one by hand" >&2; exit 1; }
    done
    for p in "${PATHS[@]}"; do mv "$ASIDE/$p" "$p"; done
    rmdir "$ASIDE/docs" "$ASIDE"
    echo "moved ${PATHS[*]} back"
    ;;
  *) echo "usage: bash scripts/device_tree.sh aside|back" >&2; exit 2 ;;
esac
