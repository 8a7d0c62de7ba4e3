import FastGPUAPI
import FastGPUControlPlane
import FastGPUGateway
import Foundation
import Testing
import Yams

/// `/metrics` as operators scrape it, and the Grafana dashboard and alert rules in `deploy/`:
/// every metric they query is one the server exports, and the dashboard has the shape Grafana
/// imports. (`promtool check rules` and `promtool test rules` run in scripts/check-observability.sh.)
@Suite struct ObservabilityTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A server with a node whose agent reports readings, a running job on an idle GPU, a budget and a service.
    static func populatedMetrics() async throws -> String {
        var configuration = ControlPlaneConfiguration()
        configuration.idleGPUAfter = .seconds(60)
        let fixture = try await Fixture.make(configuration: configuration)
        let gateway = Gateway(directory: ControlPlaneDirectory(controlPlane: fixture.controlPlane, clock: fixture.clock), name: "embedded")
        let server = APIServer(controlPlane: fixture.controlPlane, metrics: APIMetrics(), limits: .unlimited, clock: fixture.clock,
                               gatewayMetrics: { gateway.prometheusText() })
        return try await fixture.test(server: server) { api in
            let node = try await api.register("gpu-01", gpus: 2)
            #expect(try await api.call(.put, "/v1/projects/default/budget", token: fixture.admin, body: #"{"limitMicros":500000000}"#).status == .ok)
            #expect(try await api.post("/v1/services", token: fixture.admin, body: #"{"name":"detect","project":"default","command":["x"],"replicas":{"min":0,"max":2}}"#).status == .created)
            let job = try await api.submit(fixture.admin, gpus: 1)
            _ = try await api.submit(fixture.admin, gpus: 2)
            try await fixture.schedule()
            let allocation = try await api.get("/v1/jobs/\(job)", token: fixture.admin).json["allocations"]?[0]
            let (id, epoch) = (allocation?["id"]?.int ?? 0, allocation?["epoch"]?.int ?? 0)
            let gpu = Int(allocation?["slots"]?[0]?["gpu"]?.int ?? -1)
            #expect(try await api.post("/v1/nodes/\(node.id)/allocations/\(id)/status", token: node.token, body: #"{"epoch":\#(epoch),"state":"running"}"#).status == .noContent)
            for _ in 0..<3 {
                let beat = try await api.post("/v1/nodes/\(node.id)/heartbeat", token: node.token, body: """
                    {"gpus":[{"index":\(gpu),"healthy":true,"utilizationPercent":0,"memoryUsedMiB":512,"powerWatts":71.5,"energyMillijoules":5000000,
                              "temperatureCelsius":33,"eccCorrected":2,"eccUncorrected":0,"xidErrors":1,"lastXid":13,"simulated":true},
                             {"index":\(1 - gpu),"healthy":true,"utilizationPercent":250,"temperatureCelsius":9999}]}
                    """)
                #expect(beat.status == .ok, "\(beat.text)")
                fixture.clock.advance(by: .seconds(40))
            }
            let gpus = try await api.get("/v1/nodes/\(node.id)", token: fixture.admin).json["gpus"]
            let held = gpus?[gpu], other = gpus?[1 - gpu]
            #expect(held?["utilizationPercent"]?.int == 0 && held?["simulated"]?.bool == true)
            #expect(held?["idleSince"]?.string != nil)
            #expect(other?["utilizationPercent"] == nil && other?["temperatureCelsius"] == nil, "readings no GPU can give are dropped")
            let events = try await api.get("/v1/jobs/\(job)/events", token: fixture.admin).text
            #expect(events.contains("gpu-idle"), "\(events)")
            let text = try await api.get("/metrics", token: nil).text
            // Gauges name the job (`job_id`: Prometheus keeps `job` for its scrape job); counters only the device.
            let device = #"node="gpu-01",gpu="\#(gpu)",model="H100-80GB",simulated="true""#
            let labels = device + #",job_id="\#(job)",project="default""#
            for expected in ["fastgpu_gpu_utilization_ratio{\(labels)} 0", "fastgpu_gpu_memory_used_bytes{\(labels)} 536870912",
                             "fastgpu_gpu_power_watts{\(labels)} 71.5", "fastgpu_gpu_energy_joules_total{\(device)} 5000",
                             "fastgpu_gpu_temperature_celsius{\(labels)} 33", #"fastgpu_gpu_ecc_errors_total{\#(device),kind="corrected"} 2"#,
                             "fastgpu_gpu_xid_errors_total{\(device)} 1", "fastgpu_gpu_last_xid{\(device)} 13",
                             "fastgpu_gpu_idle_allocated{\(labels)} 1", "fastgpu_gpu_idle_seconds{\(labels)} 120",
                             #"fastgpu_gpu_allocation{node="gpu-01",gpu="\#(gpu)",job_id="\#(job)",project="default"} 1"#,
                             #"fastgpu_project_gpus_allocated{project="default"} 1"#, #"fastgpu_project_jobs_pending{project="default"} 1"#,
                             #"fastgpu_project_oldest_pending_seconds{project="default"} 120"#,
                             #"fastgpu_queue_wait_seconds_count{project="default"} 1"#, #"fastgpu_project_budget_soft_limit{project="default"} 400"#,
                             #"fastgpu_node_up{node="gpu-01"} 1"#, #"fastgpu_node_heartbeat_age_seconds{node="gpu-01"} 40"#] {
                #expect(text.contains(expected + "\n"), "\(expected) in /metrics")
            }
            return text
        }
    }

    /// The family names `/metrics` declares (`# TYPE name kind`).
    static func exported(_ text: String) -> Set<String> {
        Set(text.split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ")
            return words.count == 4 && words[0] == "#" && words[1] == "TYPE" ? String(words[2]) : nil
        })
    }

    /// `fastgpu_…` names in a PromQL expression, with a histogram's `_bucket`/`_sum`/`_count` taken off.
    static func metricNames(in expression: String) -> Set<String> {
        var names: Set<String> = []
        var rest = Substring(expression)
        while let start = rest.range(of: "fastgpu_") {
            let before = rest[..<start.lowerBound].last
            let name = rest[start.lowerBound...].prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" }
            rest = rest[name.endIndex...]
            if let before, before.isLetter || before.isNumber || before == "_" || before == ":" { continue }
            var base = String(name)
            for suffix in ["_bucket", "_sum", "_count"] where base.hasSuffix(suffix) { base.removeLast(suffix.count) }
            names.insert(base)
        }
        return names
    }

    static func dashboard() throws -> [String: Any] {
        let data = try Data(contentsOf: repository.appendingPathComponent("deploy/grafana/fastgpu.json"))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    static func ruleExpressions() throws -> [String] {
        let text = try String(contentsOf: repository.appendingPathComponent("deploy/prometheus/fastgpu-rules.yml"), encoding: .utf8)
        let document = try #require(try Yams.load(yaml: text) as? [String: Any])
        let groups = try #require(document["groups"] as? [[String: Any]])
        return groups.flatMap { ($0["rules"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
    }

    @Test func everyMetricTheDashboardAndTheAlertRulesUseIsExported() async throws {
        let exported = Self.exported(try await Self.populatedMetrics())
        let panels = try #require(try Self.dashboard()["panels"] as? [[String: Any]])
        let dashboardExpressions = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        let ruleExpressions = try Self.ruleExpressions()
        #expect(dashboardExpressions.count >= 30 && ruleExpressions.count >= 10)
        // Recording rules' own names (`fastgpu:…`) are made by Prometheus, not scraped.
        let used = (dashboardExpressions + ruleExpressions).reduce(into: Set<String>()) { $0.formUnion(Self.metricNames(in: $1)) }
        #expect(used.count >= 30, "\(used.sorted())")
        #expect(used.subtracting(exported).sorted() == [], "queried but not exported")
        // And the other way: what a GPU operator looks at most has a panel.
        for name in ["fastgpu_gpu_utilization_ratio", "fastgpu_gpu_idle_allocated", "fastgpu_queue_wait_seconds", "fastgpu_project_gpus_allocated",
                     "fastgpu_project_spend_this_month", "fastgpu_gpu_healthy", "fastgpu_service_requests_total", "fastgpu_node_up"] {
            #expect(used.contains(name), "\(name) is on no panel and in no rule")
        }
        #expect(Self.metricNames(in: #"histogram_quantile(0.95, sum by (le) (rate(fastgpu_queue_wait_seconds_bucket{project=~"$project"}[30m])))"#)
                == ["fastgpu_queue_wait_seconds"])
    }

    /// The parts of Grafana's dashboard model an import needs: ids unique, every panel placed on
    /// the 24-column grid without overlap, every query with a refId and the datasource variable.
    /// `--metrics-token-file`: `/metrics` names projects and jobs; an operator may close it.
    @Test func aMetricsTokenClosesMetrics() async throws {
        let fixture = try await Fixture.make()
        let server = APIServer(controlPlane: fixture.controlPlane, metrics: APIMetrics(), limits: .unlimited, clock: fixture.clock,
                               metricsToken: "scrape-0123456789abcdef")
        try await fixture.test(server: server) { api in
            #expect(try await api.get("/metrics", token: nil).status == .unauthorized)
            #expect(try await api.get("/metrics", token: "scrape-0123456789abcdeX").status == .unauthorized)
            #expect(try await api.get("/metrics", token: fixture.admin).status == .unauthorized, "an API token is not the metrics token")
            let open = try await api.get("/metrics", token: "scrape-0123456789abcdef")
            #expect(open.status == .ok && open.text.contains("fastgpu_gpus_total"))
        }
    }

    @Test func theDashboardHasTheShapeGrafanaImports() throws {
        let dashboard = try Self.dashboard()
        #expect(dashboard["uid"] as? String == "fastgpu-cluster" && dashboard["title"] as? String == "FastGPU")
        #expect((dashboard["schemaVersion"] as? Int ?? 0) >= 36)
        let variables = try #require((dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]])
        #expect(variables.map { $0["name"] as? String } == ["datasource", "project", "node"])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        var ids: Set<Int> = []
        var cells: Set<[Int]> = []
        for panel in panels {
            let id = try #require(panel["id"] as? Int)
            #expect(ids.insert(id).inserted, "panel id \(id) twice")
            let title = panel["title"] as? String ?? ""
            #expect(!title.isEmpty)
            let type = try #require(panel["type"] as? String)
            #expect(["row", "stat", "timeseries", "table", "bargauge"].contains(type), "\(title): \(type)")
            let grid = try #require(panel["gridPos"] as? [String: Int])
            let (x, y, w, h) = (grid["x"] ?? -1, grid["y"] ?? -1, grid["w"] ?? 0, grid["h"] ?? 0)
            #expect(x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= 24, "\(title): \(grid)")
            for column in x..<max(x, x + w) { for row in y..<max(y, y + h) { #expect(cells.insert([column, row]).inserted, "\(title) overlaps at \(column),\(row)") } }
            guard type != "row" else { continue }
            #expect((panel["datasource"] as? [String: String])?["uid"] == "${datasource}", "\(title)")
            let targets = try #require(panel["targets"] as? [[String: Any]], "\(title)")
            #expect(!targets.isEmpty)
            let refIds = targets.compactMap { $0["refId"] as? String }
            #expect(refIds.count == targets.count && Set(refIds).count == refIds.count, "\(title)")
            #expect(targets.allSatisfy { !($0["expr"] as? String ?? "").isEmpty }, "\(title)")
        }
        #expect(panels.filter { $0["type"] as? String == "row" }.map { $0["title"] as? String } == ["Cluster", "Projects", "Nodes and GPUs", "Queue", "Services"])
    }
}
