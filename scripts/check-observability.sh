#!/usr/bin/env bash
# Checks deploy/: the alert rules load (`promtool check rules`) and fire as their unit tests say
# (`promtool test rules`), and every query of the Grafana dashboard is valid PromQL (each is
# loaded as a recording rule, with the dashboard's $project and $node variables as ".*").
# Which metrics they use, and that the server exports them, is ObservabilityTests' part.
set -euo pipefail
cd "$(dirname "$0")/../deploy"
promtool check rules prometheus/fastgpu-rules.yml
(cd prometheus && promtool test rules fastgpu-rules.test.yml)
rules=$(mktemp --suffix=.yml)
trap 'rm -f "$rules"' EXIT
python3 - grafana/fastgpu.json > "$rules" <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1]))
print("groups:\n  - name: dashboard\n    rules:")
n = 0
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        n += 1
        expr = target["expr"].replace("$project", ".*").replace("$node", ".*")
        print(f"      - record: dashboard:query_{n}\n        expr: {json.dumps(expr)}")
PY
promtool check rules "$rules" | sed 's|'"$rules"'|the dashboard'"'"'s queries|'
