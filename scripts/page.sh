#!/bin/sh
# The README's example paging script: stands in for your paging tool's command line and prints
# what hub hands it. `scripts/page.sh --team ops ENTITY TITLE` as the README's "page-oncall"
# action calls it; replace the echo lines with your tool's call. Exit 75 asks hub to retry,
# any other non-zero exit is a failure hub records and does not retry.
team=""
if [ "$1" = "--team" ]; then
    team="$2"
    shift 2
fi
echo "page.sh: paging team '${team:-default}' for ${HUB_SOURCE:-?} problem ${HUB_DISPLAY_ID:-?} (${HUB_STATE:-?})"
i=0
for arg in "$@"; do
    i=$((i + 1))
    printf '  [%d] %s\n' "$i" "$arg"
done
exit 0
