#!/usr/bin/env bash
# testenv/fuzz.sh runs every native Go fuzz target (func FuzzXxx in a
# *_test.go file) of oomhero's modules for a bounded time each. Go fuzzes one
# target per `go test -fuzz` invocation, so the targets are found here
# (`go test -list '^Fuzz'` on the packages whose test files declare one) and
# run one after the other: a target added anywhere is picked up without
# touching this script.
#
# A failing input is saved by Go under <package>/testdata/fuzz/<Target>/;
# the script prints its path and content, goes on with the other targets and
# exits 1 at the end. Commit that file with the fix: it stays a test that
# every `go test` runs.
#
# Usage: testenv/fuzz.sh [regexp]    only targets whose name matches
# Environment: FUZZTIME (per target, default 5s); FUZZBUDGET (seconds of
# fuzzing in all: FUZZTIME is shortened to fit, 2s at least; unset: no cap);
# FUZZMINIMIZETIME (default 10s); GO (default go).
set -uo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
# Minimising a failing input is bounded too (Go's default is a minute).
MINIMIZE=${FUZZMINIMIZETIME:-10s}
only=${1:-.}
# The project's modules (testenv/k8s/cluster only wraps the Kubernetes build).
modules=(. testenv/k8s testenv/cgroupsbench)

# packages prints the import paths of a module's packages whose test files
# declare a fuzz target (a cheap filter: `go test -list` runs each test
# binary, and some suites' TestMain do real work).
packages() {
	"$GO" list -f '{{.ImportPath}} {{.Dir}} {{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}' ./... |
		while read -r pkg dir files; do
			[ -n "$files" ] || continue
			(cd "$dir" && grep -lqE '^func Fuzz[A-Z0-9_]' $files) && echo "$pkg"
		done
}

start=$(date +%s)
# Gather the targets first: "module package target" per line.
targets=()
for mod in "${modules[@]}"; do
	[ -f "$mod/go.mod" ] || continue
	mapfile -t pkgs < <(cd "$mod" && packages)
	[ ${#pkgs[@]} -gt 0 ] || continue
	# `go test -list` compiles the packages: a target that no longer
	# compiles fails here, loudly.
	if ! list=$(cd "$mod" && "$GO" test -list '^Fuzz' "${pkgs[@]}" 2>&1); then
		echo "$list"
		echo "fuzz: cannot list the fuzz targets of module $mod"
		exit 1
	fi
	# Output: target names, then "ok <package> <time>" per package.
	names=()
	while read -r first second _; do
		case "$first" in
		Fuzz*) names+=("$first") ;;
		ok)
			for name in "${names[@]}"; do
				[[ $name =~ $only ]] && targets+=("$mod $second $name")
			done
			names=()
			;;
		esac
	done <<<"$list"
done
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no fuzz target found"; exit 1; }

# Each target gets FUZZTIME, less when FUZZBUDGET (seconds of fuzzing in
# all) would be exceeded, never less than 2s.
per=${FUZZTIME%s}
if [[ $per =~ ^[0-9]+$ && -n ${FUZZBUDGET:-} ]]; then
	per=$((FUZZBUDGET / ${#targets[@]}))
	per=$((per < ${FUZZTIME%s} ? per : ${FUZZTIME%s}))
	FUZZTIME=$((per < 2 ? 2 : per))s
fi

failed=()
summary=()
for t in "${targets[@]}"; do
	read -r mod pkg name <<<"$t"
	short=${pkg#github.com/oomhero/oomhero/}
	echo "=== fuzz $short $name ($FUZZTIME)"
	dir=$(cd "$mod" && "$GO" list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$name
	before=$(ls "$dir" 2>/dev/null)
	t0=$(date +%s%N)
	out=$(cd "$mod" && "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" \
		-fuzzminimizetime "$MINIMIZE" "$pkg" 2>&1)
	rc=$?
	ms=$((($(date +%s%N) - t0) / 1000000))
	dt=$((ms / 1000)).$((ms % 1000 / 100))
	execs=$(grep -oE 'execs: [0-9]+' <<<"$out" | tail -1 | grep -oE '[0-9]+')
	mapfile -t inputs < <(comm -13 <(echo "$before") <(ls "$dir" 2>/dev/null))
	note=
	if [ $rc -ne 0 ] && [ ${#inputs[@]} -eq 0 ] && grep -q '^--- FAIL' <<<"$out" &&
		[ "$(grep -A1 '^--- FAIL' <<<"$out" | tail -1 | tr -d ' \t')" = contextdeadlineexceeded ]; then
		# Go 1.26's coordinator can report its own -fuzztime deadline
		# as a failure (go.dev/issue/75804, fixed in Go 1.27): no
		# input failed, the run is good.
		rc=0 note=" (go.dev/issue/75804 deadline race at the end, no failing input)"
	fi
	if [ $rc -eq 0 ]; then
		summary+=("$(printf 'ok    %-28s %-24s %5ss %9s execs%s' "$short" "$name" "$dt" "${execs:-?}" "$note")")
		continue
	fi
	echo "$out" | tail -40
	for f in "${inputs[@]}"; do
		echo "--- failing input $dir/$f:"
		head -c 4096 "$dir/$f"
		echo
	done
	summary+=("$(printf 'FAIL  %-28s %-24s %5ss' "$short" "$name" "$dt")")
	failed+=("$short.$name")
done

echo
echo "fuzz summary (${#targets[@]} targets, $FUZZTIME each, $(($(date +%s) - start))s in all, load $(cut -d' ' -f1-3 /proc/loadavg)):"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}"
	exit 1
fi
