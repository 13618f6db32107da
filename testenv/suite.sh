#!/usr/bin/env bash
# suite.sh LOG CMD...: runs a verbose `go test` command, keeps its whole
# output in LOG and prints the outline (RUN/PASS/FAIL lines, and lines that
# match $SUITE_SHOW). When the command fails, it also prints what each
# failing test wrote (its last 60 lines; the outline alone never says why),
# and the end of the log after a panic or a timeout. Exits with the
# command's status.
set -u
log=$1
shift
show='^(\s*--- |=== RUN|PASS|FAIL|ok|panic)'
if [ -n "${SUITE_SHOW:-}" ]; then show="$show|$SUITE_SHOW"; fi
"$@" 2>&1 | tee "$log" | grep -E "$show"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
	echo "== $* failed (exit $rc); what the failing tests wrote (whole log: $log):"
	awk '
		/^=== (RUN|NAME|CONT|PAUSE) / { cur = $3; next }
		/^[ \t]*--- (FAIL|PASS|SKIP): / {
			name = $3
			if ($2 == "FAIL:") failed[name] = 1
			cur = ""
			next
		}
		/^(FAIL|ok|PASS)/ { cur = ""; next }
		cur != "" { n[cur]++; line[cur, n[cur]] = $0 }
		END {
			for (t in failed) {
				if (!(t in n)) continue
				print "-- " t
				from = n[t] > 60 ? n[t] - 59 : 1
				for (i = from; i <= n[t]; i++) print line[t, i]
			}
		}' "$log"
	if grep -qE '^panic: ' "$log"; then
		echo "-- the log's end:"
		tail -n 60 "$log"
	fi
fi
exit "$rc"
