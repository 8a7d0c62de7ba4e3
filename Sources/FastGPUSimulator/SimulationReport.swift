import Foundation

/// Renders results: a table for the terminal, JSON for machines, SVG charts for people.
public enum SimulationReport {
    public static func table(_ metrics: [SimulationMetrics], seconds: [Double]) -> String {
        let header = ["policy", "jobs", "avg JCT s", "p50 JCT", "p95 JCT", "p99 JCT", "avg queue", "p99 queue", "makespan", "GPU alloc", "preempt", "×avg JCT", "×p99 JCT", "sim s"]
        guard let base = metrics.first else { return "" }
        var rows: [[String]] = []
        for (i, m) in metrics.enumerated() {
            rows.append([
                m.policy + (m.oracle ? " (oracle)" : ""), "\(m.finished)", fmt(m.averageJCT), fmt(m.medianJCT), fmt(m.p95JCT), fmt(m.p99JCT),
                fmt(m.averageQueueing), fmt(m.p99Queueing), fmt(m.makespan), String(format: "%.1f%%", m.gpuAllocation * 100), "\(m.preemptions)",
                ratio(m.averageJCT, base.averageJCT), ratio(m.p99JCT, base.p99JCT), i < seconds.count ? String(format: "%.1f", seconds[i]) : "",
            ])
        }
        var text = render([header] + rows)
        let never = metrics.map(\.neverPlaceable).max() ?? 0
        if never > 0 { text += "\n\(never) job(s) no node could ever host were left out." }
        if metrics.contains(where: { $0.finished < $0.jobs - $0.neverPlaceable }) { text += "\nSome jobs did not finish (see the jobs column)." }
        return text
    }

    static func fmt(_ value: Double) -> String {
        value >= 100 ? String(format: "%.0f", value) : String(format: "%.1f", value)
    }

    static func ratio(_ value: Double, _ base: Double) -> String {
        base > 0 ? String(format: "%.2f", value / base) : "-"
    }

    static func render(_ rows: [[String]]) -> String {
        let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max() ?? 0 }
        return rows.enumerated().map { r, row in
            let line = row.enumerated().map { c, cell in c == 0 ? cell.padding(toLength: widths[c], withPad: " ", startingAt: 0) : String(repeating: " ", count: widths[c] - cell.count) + cell }
                .joined(separator: "  ")
            return r == 0 ? line + "\n" + String(repeating: "-", count: line.count) : line
        }.joined(separator: "\n")
    }

    public static func json(_ metrics: [SimulationMetrics]) throws -> String {
        try encode(metrics)
    }

    public static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    public static func packingTable(_ outcomes: [PackingExperiment.Outcome]) -> String {
        guard let loads = outcomes.first?.points.map(\.loadPercent) else { return "" }
        var rows = [["policy"] + loads.map { "\($0)% load" } + ["failed pods"]]
        if let bound = outcomes.first {
            rows.append(["upper bound"] + bound.points.map { String(format: "%.2f%%", $0.upperBound * 100) } + [""])
        }
        for outcome in outcomes {
            rows.append([outcome.policy] + outcome.points.map { String(format: "%.2f%%", $0.allocationRatio * 100) } + ["\(outcome.points.last?.failedPods ?? 0)"])
        }
        return render(rows)
    }

    /// Where each policy left the capacity it did not allocate, at the top load.
    public static func strandedTable(_ outcomes: [PackingExperiment.Outcome], gpus: Int) -> String {
        var rows = [["policy", "unallocated", "in partly used GPUs", "of it 150-199 free", "whole GPUs, no CPU/mem", "whole GPUs, other", "failed pods by kind"]]
        func percent(_ milli: Int) -> String { String(format: "%.2f%%", Double(milli) / Double(max(1, gpus * 1000)) * 100) }
        for outcome in outcomes {
            guard let s = outcome.stranded else { continue }
            let total = s.partlyFreeMilli + 1000 * (s.wholeGPUsWithoutCPUOrMemory + s.wholeGPUsOther)
            rows.append([outcome.policy, percent(total), percent(s.partlyFreeMilli), "\(s.partlyFreeGPUs[150] ?? 0) GPUs",
                         "\(s.wholeGPUsWithoutCPUOrMemory)", "\(s.wholeGPUsOther)",
                         s.failedPods.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")])
        }
        return render(rows)
    }

    public static func packingChart(_ outcomes: [PackingExperiment.Outcome], title: String) -> String {
        let loads = outcomes.first?.points.map { Double($0.loadPercent) } ?? [100]
        var series = outcomes.map { o in (o.policy, o.points.map { (Double($0.loadPercent), $0.allocationRatio * 100) }) }
        if let first = outcomes.first { series.append(("upper bound", first.points.map { (Double($0.loadPercent), $0.upperBound * 100) })) }
        let low = (series.flatMap { $0.1.map(\.1) }.min() ?? 80).rounded(.down) - 1
        let xr = (loads.min()!, max(loads.max()!, loads.min()! + 1))
        return chart(title: title, xLabel: "arrived GPU demand (% of capacity)", yLabel: "GPU allocation ratio (%)", series: series,
                     xRange: xr, yRange: (low, 100.5), xTicks: loads.map { ($0, "\(Int($0))%") },
                     yTicks: stride(from: low.rounded(.up), through: 100, by: max(1, ((100 - low) / 5).rounded())).map { ($0, String(format: "%.0f%%", $0)) },
                     dashed: [series.count - 1])
    }

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]

    /// The CDF of job completion time per policy, log-scaled time axis.
    public static func jctChart(_ metrics: [SimulationMetrics], title: String) -> String {
        let series = metrics.map { m -> (String, [(Double, Double)]) in
            let times = m.completionTimes
            guard !times.isEmpty else { return (m.policy, []) }
            // At most ~400 points per curve: enough for the eye, small files.
            let step = max(1, times.count / 400)
            var points = stride(from: 0, to: times.count, by: step).map { (max(1, times[$0]), Double($0 + 1) / Double(times.count)) }
            points.append((max(1, times.last!), 1))
            return (m.policy + (m.oracle ? " (oracle)" : ""), points)
        }
        let maxX = series.flatMap { $0.1.map(\.0) }.max() ?? 10
        return chart(title: title, xLabel: "job completion time (s, log scale)", yLabel: "fraction of jobs", series: series,
                     xRange: (0, log10(max(10, maxX))), yRange: (0, 1), xTransform: { log10(max(1, $0)) },
                     xTicks: (0...Int(log10(max(10, maxX)).rounded(.up))).map { (Double($0), "10^\($0)") },
                     yTicks: stride(from: 0.0, through: 1.0, by: 0.25).map { ($0, String(format: "%.2f", $0)) })
    }

    /// A line chart in plain SVG: axes, ticks, one polyline per series and a legend.
    static func chart(title: String, xLabel: String, yLabel: String, series: [(String, [(Double, Double)])],
                      xRange: (Double, Double), yRange: (Double, Double), xTransform: (Double) -> Double = { $0 },
                      xTicks: [(Double, String)], yTicks: [(Double, String)], dashed: Set<Int> = []) -> String {
        let width = 760.0, height = 460.0, left = 70.0, right = 190.0, top = 40.0, bottom = 60.0
        let plotW = width - left - right, plotH = height - top - bottom
        func x(_ v: Double) -> Double { left + (v - xRange.0) / max(1e-9, xRange.1 - xRange.0) * plotW }
        func y(_ v: Double) -> Double { top + plotH - (v - yRange.0) / max(1e-9, yRange.1 - yRange.0) * plotH }
        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="Helvetica, Arial, sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(Int(left))" y="24" font-size="15" font-weight="bold">\(escape(title))</text>
        <rect x="\(left)" y="\(top)" width="\(plotW)" height="\(plotH)" fill="none" stroke="#444"/>

        """
        for (value, label) in xTicks {
            svg += "<line x1=\"\(x(value))\" y1=\"\(top)\" x2=\"\(x(value))\" y2=\"\(top + plotH)\" stroke=\"#ddd\"/>\n"
            svg += "<text x=\"\(x(value))\" y=\"\(top + plotH + 18)\" text-anchor=\"middle\">\(escape(label))</text>\n"
        }
        for (value, label) in yTicks {
            svg += "<line x1=\"\(left)\" y1=\"\(y(value))\" x2=\"\(left + plotW)\" y2=\"\(y(value))\" stroke=\"#ddd\"/>\n"
            svg += "<text x=\"\(left - 8)\" y=\"\(y(value) + 4)\" text-anchor=\"end\">\(escape(label))</text>\n"
        }
        svg += "<text x=\"\(left + plotW / 2)\" y=\"\(height - 18)\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        svg += "<text transform=\"translate(18,\(top + plotH / 2)) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"
        for (i, (name, points)) in series.enumerated() {
            let color = palette[i % palette.count]
            let path = points.map { String(format: "%.1f,%.1f", x(xTransform($0.0)), y($0.1)) }.joined(separator: " ")
            let dash = dashed.contains(i) ? " stroke-dasharray=\"6 4\"" : ""
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dash) points=\"\(path)\"/>\n"
            let ly = top + 16 + Double(i) * 20
            svg += "<line x1=\"\(left + plotW + 14)\" y1=\"\(ly - 4)\" x2=\"\(left + plotW + 38)\" y2=\"\(ly - 4)\" stroke=\"\(color)\" stroke-width=\"3\"\(dash)/>\n"
            svg += "<text x=\"\(left + plotW + 44)\" y=\"\(ly)\">\(escape(name))</text>\n"
        }
        return svg + "</svg>\n"
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
