#!/usr/bin/env bash
# Mutation testing of the core modules, each against its own fast tests (mutmut 3).
#
#   tools/mutation.sh              every row of the table below
#   tools/mutation.sh ordering     only the named rows
#   MUTATION_JOBS=2 tools/mutation.sh  worker processes (default: all cores)
#
# Each row runs in a scratch copy under .mutation/<name>/ (the repository is not touched),
# with [tool.mutmut] from pyproject.toml plus that row's module and tests. It prints the
# score and every surviving mutant; `cd .mutation/<name> && mutmut show <mutant>` shows
# one's diff. A timeout (a mutant that makes a test hang) counts as caught.
# Needs `pip install mutmut` (3.x); it is deliberately not a test or CI dependency.
set -euo pipefail

# name | module to mutate | its fast tests (space-separated)
TABLE='
rules     | okx_async/_limiter/_rules.py  | tests/test_ratelimit.py tests/test_limiter_gaps.py tests/test_bursts.py
memory    | okx_async/_limiter/_memory.py | tests/test_ratelimit.py tests/test_limiter_gaps.py
ordering  | okx_async/_ordering.py        | tests/test_ordering.py tests/test_ordering_gaps.py
retry     | okx_async/_retry.py           | tests/test_retry.py
'

root=$(cd "$(dirname "$0")/.." && pwd)
jobs=${MUTATION_JOBS:-$(nproc)}
command -v mutmut >/dev/null || { echo "mutmut not found: pip install 'mutmut>=3,<4'" >&2; exit 2; }

run_row() {
    local name=$1 module=$2 tests=$3
    local work="$root/.mutation/$name"
    rm -rf "$work" && mkdir -p "$work"
    (cd "$root" && git ls-files -co --exclude-standard okx_async tests pyproject.toml \
        | grep -v '^\.mutation/' | tar -cf - -T - ) | tar -xf - -C "$work"
    # This row's module and tests replace the defaults of [tool.mutmut].
    python - "$work/pyproject.toml" "$module" $tests <<'PY'
import json, re, sys
path, module, tests = sys.argv[1], sys.argv[2], sys.argv[3:]
text = open(path).read()
head, sep, section = text.partition("[tool.mutmut]\n")
assert sep, "pyproject.toml has no [tool.mutmut] section"
section = re.sub(r"(?m)^(only_mutate|pytest_add_cli_args_test_selection) = .*\n", "", section)
row = f"only_mutate = {json.dumps([module])}\n"
row += f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
open(path, "w").write(head + sep + row + section)
PY
    echo "== $name: $module against $tests"
    (cd "$work" && mutmut run --max-children "$jobs" >run.log 2>&1) || {
        echo "mutmut failed for $name; see $work/run.log" >&2; tail -20 "$work/run.log" >&2; return 1; }
    (cd "$work" && mutmut export-cicd-stats >/dev/null && python - "$name" <<'PY'
import json, subprocess, sys
s = json.load(open("mutants/mutmut-cicd-stats.json"))
caught = s["killed"] + s["timeout"] + s.get("caught_by_type_check", 0)
tested = caught + s["survived"]
score = 100.0 * caught / tested if tested else 0.0
print(f"{sys.argv[1]}: {s['total']} mutants, {s['killed']} killed, {s['timeout']} timed out, "
      f"{s['survived']} survived, {s['no_tests']} not covered, {s['skipped']} skipped "
      f"-> score {score:.1f}% of tested")
PY
    mutmut results | sed -n 's/^ *\(.*\): survived$/  survived: \1/p'
    mutmut results | sed -n 's/^ *\(.*\): no tests$/  not covered: \1/p')
}

selected=" $* "
status=0
while IFS='|' read -r name module tests; do
    name=$(echo "$name" | xargs); [ -n "$name" ] || continue
    if [ $# -gt 0 ] && [[ $selected != *" $name "* ]]; then continue; fi
    run_row "$name" "$(echo "$module" | xargs)" "$(echo "$tests" | xargs)" || status=1
done <<< "$TABLE"
exit $status
