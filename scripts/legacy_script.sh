#!/bin/sh
# Stand-in for an incident tool's command line: prints what hub hands it, so you can see the contract.
# Arguments arrive as whole words (never through a shell); HUB_* variables describe the problem.
echo "legacy_script.sh called with $# argument(s):"
i=0
for arg in "$@"; do
    i=$((i + 1))
    printf '  [%d] %s\n' "$i" "$arg"
done
echo "environment:"
env | grep '^HUB_' | sort | sed 's/^/  /'
exit 0
