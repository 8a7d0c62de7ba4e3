#!/usr/bin/env python3
"""Writes deploy/grafana/fastgpu.json, FastGPU's Grafana dashboard: cluster, projects, nodes and
GPUs, queue, services. Edit the panels here and run it again (the JSON is committed so that
operators import it without Python). ObservabilityTests checks the JSON's shape and that every
metric it queries is one the server exports.

    python3 scripts/grafana-dashboard.py
"""
import json
import pathlib

DS = {"type": "prometheus", "uid": "${datasource}"}
P = 'project=~"$project"'
N = 'node=~"$node"'


def panel(kind, title, targets, unit=None, w=6, h=6, description=None, **extra):
    p = {"type": kind, "title": title, "datasource": DS,
         "targets": [{"expr": e, "legendFormat": l, "refId": chr(65 + i), "datasource": DS} for i, (e, l) in enumerate(targets)],
         "fieldConfig": {"defaults": {}, "overrides": []}, "options": {}, "_w": w, "_h": h}
    if unit:
        p["fieldConfig"]["defaults"]["unit"] = unit
    if description:
        p["description"] = description
    p.update(extra)
    return p


def stat(title, expr, unit=None, **kw):
    return panel("stat", title, [(expr, "")], unit, w=4, h=4, **kw)


rows = [
    ("Cluster", [
        stat("GPUs", "fastgpu_gpus_total"),
        stat("GPUs allocated", "fastgpu_gpus_allocated / fastgpu_gpus_total", "percentunit"),
        stat("Utilisation of allocated GPUs",
             "avg(fastgpu_gpu_utilization_ratio and on (node, gpu) (fastgpu_gpu_allocated > 0))", "percentunit",
             description="What the GPUs that jobs hold actually compute."),
        stat("Idle allocated GPUs", "sum(fastgpu_gpu_idle_allocated) or vector(0)",
             description="Held by a running job at 0 % for longer than the server's --idle-gpu-after."),
        stat("Unhealthy GPUs", "count(fastgpu_gpu_healthy == 0) or vector(0)"),
        stat("Power", "sum(fastgpu_gpu_power_watts)", "watt"),
        panel("timeseries", "GPUs allocated and total", [("fastgpu_gpus_allocated", "allocated"), ("fastgpu_gpus_total", "total")], w=8),
        panel("timeseries", "Jobs by state", [("fastgpu_jobs", "{{state}}")], w=8),
        panel("timeseries", "Nodes by state", [("fastgpu_nodes", "{{state}}")], w=8),
        panel("timeseries", "Energy per hour", [("sum(increase(fastgpu_gpu_energy_joules_total[1h])) / 3.6e6", "kWh")], w=12,
              description="From the drivers' energy counters (absent where a driver does not count energy)."),
        panel("timeseries", "Allocated GPU utilisation by model",
              [("avg by (model) (fastgpu_gpu_utilization_ratio and on (node, gpu) (fastgpu_gpu_allocated > 0))", "{{model}}")], "percentunit", w=12),
    ]),
    ("Projects", [
        panel("timeseries", "GPUs allocated by project", [(f"fastgpu_project_gpus_allocated{{{P}}}", "{{project}}")], w=8, stack=True),
        panel("timeseries", "Utilisation of held GPUs by project",
              [(f'avg by (project) (fastgpu_gpu_utilization_ratio{{{P},project!=""}})', "{{project}}")], "percentunit", w=8),
        panel("timeseries", "Idle held GPUs by project", [(f"sum by (project) (fastgpu_gpu_idle_allocated{{{P}}})", "{{project}}")], w=8),
        panel("timeseries", "Spend this month", [(f"fastgpu_project_spend_this_month{{{P}}}", "{{project}}")], "currencyUSD", w=8),
        panel("bargauge", "Budget used", [(f"fastgpu_project_budget_used_ratio{{{P}}}", "{{project}}")], "percentunit", w=8),
        panel("table", "Idle allocated GPUs (job_id, project, node, GPU)",
              [(f"fastgpu_gpu_idle_seconds{{{P}}} > 0 and on (node, gpu) fastgpu_gpu_idle_allocated == 1", "")], "s", w=8,
              description="Which jobs hold GPUs that compute nothing, and for how long."),
    ]),
    ("Nodes and GPUs", [
        panel("timeseries", "GPU utilisation", [(f"fastgpu_gpu_utilization_ratio{{{N}}}", "{{node}}/gpu{{gpu}}")], "percentunit", w=12),
        panel("timeseries", "GPU memory used", [(f"fastgpu_gpu_memory_used_bytes{{{N}}}", "{{node}}/gpu{{gpu}}")], "bytes", w=12),
        panel("timeseries", "Power", [(f"fastgpu_gpu_power_watts{{{N}}}", "{{node}}/gpu{{gpu}}")], "watt", w=8),
        panel("timeseries", "Temperature", [(f"fastgpu_gpu_temperature_celsius{{{N}}}", "{{node}}/gpu{{gpu}}")], "celsius", w=8),
        panel("timeseries", "Heartbeat age", [(f"fastgpu_node_heartbeat_age_seconds{{{N}}}", "{{node}}")], "s", w=8),
        panel("table", "Unhealthy GPUs", [(f"fastgpu_gpu_healthy{{{N}}} == 0", "")], w=8),
        panel("timeseries", "XID errors (10 min)", [(f"increase(fastgpu_gpu_xid_errors_total{{{N}}}[10m]) > 0", "{{node}}/gpu{{gpu}}")], w=8),
        panel("timeseries", "ECC errors (10 min)", [(f"increase(fastgpu_gpu_ecc_errors_total{{{N}}}[10m]) > 0", "{{node}}/gpu{{gpu}} {{kind}}")], w=8),
        panel("table", "Who holds each GPU", [(f"fastgpu_gpu_allocation{{{N}}}", "")], w=24, h=8),
    ]),
    ("Queue", [
        panel("timeseries", "Jobs waiting", [("fastgpu_queue_length", "all"), (f"fastgpu_project_jobs_pending{{{P}}}", "{{project}}")], w=8),
        panel("timeseries", "Queue wait at placement (p50, p95)", [
            (f"histogram_quantile(0.5, sum by (le) (rate(fastgpu_queue_wait_seconds_bucket{{{P}}}[30m])))", "p50"),
            (f"histogram_quantile(0.95, sum by (le) (rate(fastgpu_queue_wait_seconds_bucket{{{P}}}[30m])))", "p95")], "s", w=8),
        panel("timeseries", "Oldest waiting job by project", [(f"fastgpu_project_oldest_pending_seconds{{{P}}}", "{{project}}")], "s", w=8),
        panel("timeseries", "Placements per second", [("rate(fastgpu_placements_total[5m])", "placements")], w=8),
        panel("timeseries", "Scheduling pass (p99)", [
            ("histogram_quantile(0.99, rate(fastgpu_scheduling_decision_seconds_bucket[5m]))", "decision"),
            ("histogram_quantile(0.99, rate(fastgpu_scheduling_commit_seconds_bucket[5m]))", "commit")], "s", w=8),
        panel("timeseries", "API latency (p99 by route)", [
            ("histogram_quantile(0.99, sum by (route, le) (rate(fastgpu_api_request_seconds_bucket[5m])))", "{{route}}")], "s", w=8),
    ]),
    ("Services", [
        panel("timeseries", "Replicas", [(f"fastgpu_service_replicas{{{P}}}", "{{service}} {{state}}"),
                                         (f"fastgpu_service_desired_replicas{{{P}}}", "{{service}} desired")], w=8),
        panel("timeseries", "Requests per second", [("sum by (service) (rate(fastgpu_service_requests_total[5m]))", "{{service}}")], "reqps", w=8),
        panel("timeseries", "Latency (p95)", [
            ("histogram_quantile(0.95, sum by (service, le) (rate(fastgpu_service_request_seconds_bucket[5m])))", "{{service}}")], "s", w=8),
        panel("timeseries", "Held for a cold start, refused", [
            ("sum by (service) (rate(fastgpu_service_cold_start_requests_total[5m]))", "{{service}} cold start"),
            ("sum by (service) (rate(fastgpu_service_refused_total[5m]))", "{{service}} refused")], "reqps", w=12),
        panel("timeseries", "In flight", [("sum by (service) (fastgpu_service_in_flight)", "{{service}}")], w=12),
    ]),
]

panels = []
next_id = 1
y = 0
for title, members in rows:
    panels.append({"type": "row", "title": title, "id": next_id, "collapsed": False, "panels": [],
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
    next_id += 1
    y += 1
    x, row_h = 0, 0
    for p in members:
        w, h = p.pop("_w"), p.pop("_h")
        stack = p.pop("stack", False)
        if stack:
            p["fieldConfig"]["defaults"]["custom"] = {"stacking": {"mode": "normal"}}
        if x + w > 24:
            x, y = 0, y + row_h
            row_h = 0
        p["id"] = next_id
        p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        next_id += 1
        x += w
        row_h = max(row_h, h)
        panels.append(p)
    y += row_h

dashboard = {
    "uid": "fastgpu-cluster",
    "title": "FastGPU",
    "description": "A FastGPU pool: capacity, allocation, utilisation and idle GPUs, projects and spend, nodes and GPU health, the queue, services.",
    "tags": ["fastgpu", "gpu"],
    "schemaVersion": 39,
    "version": 1,
    "editable": True,
    "graphTooltip": 1,
    "time": {"from": "now-6h", "to": "now"},
    "refresh": "30s",
    "timezone": "",
    "annotations": {"list": []},
    "links": [],
    "templating": {"list": [
        {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus", "current": {}, "hide": 0},
        {"name": "project", "label": "Project", "type": "query", "datasource": DS, "definition": "label_values(fastgpu_project_jobs_pending, project)",
         "query": {"query": "label_values(fastgpu_project_jobs_pending, project)", "refId": "project"}, "includeAll": True, "multi": True,
         "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "refresh": 2, "hide": 0},
        {"name": "node", "label": "Node", "type": "query", "datasource": DS, "definition": "label_values(fastgpu_node_up, node)",
         "query": {"query": "label_values(fastgpu_node_up, node)", "refId": "node"}, "includeAll": True, "multi": True,
         "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "refresh": 2, "hide": 0},
    ]},
    "panels": panels,
}
out = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "fastgpu.json"
out.write_text(json.dumps(dashboard, indent=2) + "\n")
print(f"{out}: {len(panels)} panels")
