import Foundation
public import FastGPUModel

/// A trace that cannot be read: which file, which line, what is wrong. One line, for the CLI.
public struct TraceError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var line: Int?
    public var message: String

    public init(file: String, line: Int? = nil, _ message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String {
        line.map { "\(file):\($0): \(message)" } ?? "\(file): \(message)"
    }
}

/// The trace formats `fastgpu sim` reads. Each reader documents its columns; see the traces'
/// `SOURCE.md` for their origin.
public enum TraceFormat: String, CaseIterable, Sendable {
    /// Microsoft Philly as shipped by the Pollux artifact: `timestamp,duration,num_gpus,gpu_time,cluster`.
    case philly
    /// SenseTime Helios Venus slice: `#` comments, then `job_id,user,tenant,class,submit_time(µs),num_chips,chip_type,num_nodes,duration_s,…`.
    case helios
    /// Alibaba GPU 2023 (openb) pod list: `name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time`.
    case alibaba
    /// The generic format: `submit_s,gpus,duration_s[,gpu_milli,project,priority]` with a header line.
    case csv
    /// The Slurm peer's workload: `idx,gpus,duration_s,timelimit_min`, all submitted at time 0.
    case slurm
}

public enum TraceReader {
    /// Reads a trace file in the given format. Rows that cannot be used stop the read with the
    /// line number; a file without usable rows is an error too.
    public static func read(_ path: String, format: TraceFormat) throws -> Trace {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw TraceError(file: path, "cannot read the file")
        }
        return try parse(text, format: format, file: path)
    }

    public static func parse(_ text: String, format: TraceFormat, file: String) throws -> Trace {
        var rows = CSVRows(text: text, file: file)
        let jobs: [TraceJob]
        switch format {
        case .philly: jobs = try philly(&rows)
        case .helios: jobs = try helios(&rows)
        case .alibaba: jobs = try alibaba(&rows)
        case .csv: jobs = try generic(&rows)
        case .slurm: jobs = try slurm(&rows)
        }
        guard !jobs.isEmpty else { throw TraceError(file: file, "no jobs in the trace") }
        let name = file.split(separator: "/").last.map(String.init) ?? file
        return Trace(name: name, jobs: Trace.ordered(jobs))
    }

    static func philly(_ rows: inout CSVRows) throws -> [TraceJob] {
        try rows.expectHeader(["timestamp", "duration", "num_gpus", "gpu_time", "cluster"])
        var jobs: [TraceJob] = []
        var first: Int64?
        while let row = try rows.next() {
            let submit = try row.timestamp(0)
            let duration = try row.seconds(1)
            let gpus = try row.int(2, min: 1)
            first = min(first ?? submit, submit)
            jobs.append(TraceJob(id: 0, name: "philly-\(row.line)", submitMilliseconds: submit * 1000, durationMilliseconds: duration,
                                 gpus: gpus, project: try row.text(4)))
        }
        let base = (first ?? 0) * 1000
        return jobs.map { var j = $0; j.submitMilliseconds -= base; return j }
    }

    static func helios(_ rows: inout CSVRows) throws -> [TraceJob] {
        try rows.expectHeader(["job_id", "user", "tenant", "class", "submit_time", "num_chips", "chip_type", "num_nodes", "duration_s"])
        var jobs: [TraceJob] = []
        while let row = try rows.next() {
            let micros = try row.int64(4, min: 0)
            jobs.append(TraceJob(id: 0, name: "helios-\(try row.text(0))", submitMilliseconds: micros / 1000,
                                 durationMilliseconds: try row.seconds(8), gpus: try row.int(5, min: 1), nodes: try row.int(7, min: 1),
                                 project: try row.text(2), user: try row.text(1)))
        }
        return jobs
    }

    static func alibaba(_ rows: inout CSVRows) throws -> [TraceJob] {
        try rows.expectHeader(["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec", "qos", "pod_phase", "creation_time", "deletion_time"])
        var jobs: [TraceJob] = []
        while let row = try rows.next() {
            let gpus = try row.int(3, min: 0)
            let milli = gpus == 0 ? 0 : try row.int(4, min: 1, max: 1000)
            let created = try row.int64(8, min: 0)
            let deleted = try row.int64(9, min: 0)
            let spec = row.optionalText(5).map { $0.split(separator: "|").map(String.init) } ?? []
            jobs.append(TraceJob(id: 0, name: try row.text(0), submitMilliseconds: created * 1000,
                                 durationMilliseconds: max(0, deleted - created) * 1000, gpus: gpus, gpuMilli: milli,
                                 project: try row.text(6), cpuMillis: try row.int(1, min: 0), memoryMiB: try row.int(2, min: 0), gpuModels: spec))
        }
        return jobs
    }

    static func generic(_ rows: inout CSVRows) throws -> [TraceJob] {
        try rows.expectHeader(["submit_s", "gpus", "duration_s"])
        var jobs: [TraceJob] = []
        while let row = try rows.next() {
            let gpus = try row.int(1, min: 0)
            jobs.append(TraceJob(id: 0, name: "job-\(row.line)", submitMilliseconds: try row.seconds(0), durationMilliseconds: try row.seconds(2),
                                 gpus: gpus, gpuMilli: try row.optionalInt(3, min: 1, max: 1000) ?? 1000,
                                 project: row.optionalText(4) ?? "default", priority: try row.optionalInt(5, min: Int.min, max: Int.max) ?? PriorityClass.normal.value))
        }
        return jobs
    }

    static func slurm(_ rows: inout CSVRows) throws -> [TraceJob] {
        try rows.expectHeader(["idx", "gpus", "duration_s", "timelimit_min"])
        var jobs: [TraceJob] = []
        while let row = try rows.next() {
            jobs.append(TraceJob(id: 0, name: "slurm-\(try row.text(0))", submitMilliseconds: 0, durationMilliseconds: try row.seconds(2), gpus: try row.int(1, min: 1)))
        }
        return jobs
    }

    /// Alibaba's node list: `sn,cpu_milli,memory_mib,gpu,model`. GPU-less nodes are kept (CPU pods).
    public static func alibabaNodes(_ path: String) throws -> [Node] {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch { throw TraceError(file: path, "cannot read the file") }
        var rows = CSVRows(text: text, file: path)
        try rows.expectHeader(["sn", "cpu_milli", "memory_mib", "gpu", "model"])
        var nodes: [Node] = []
        while let row = try rows.next() {
            let count = try row.int(3, min: 0)
            let model = row.optionalText(4) ?? ""
            if count > 0 && model.isEmpty { throw TraceError(file: path, line: row.line, "a node with GPUs needs a model") }
            let id = NodeID(UInt64(nodes.count + 1))
            let gpus = (0..<count).map { GPU(index: $0, uuid: "GPU-\(id.rawValue)-\($0)", model: model, memoryMiB: 32 * 1024) }
            nodes.append(Node(id: id, name: try row.text(0), gpus: gpus, cpuMillis: try row.int(1, min: 0), memoryMiB: try row.int(2, min: 0)))
        }
        guard !nodes.isEmpty else { throw TraceError(file: path, "no nodes in the node list") }
        return nodes
    }
}

/// Comma-separated rows with their line numbers; `#` lines and blank lines are skipped.
/// The traces here never quote fields, so a quote is reported rather than guessed at.
struct CSVRows {
    let file: String
    private var lines: [Substring]
    private var position = 0
    private var header: [String] = []

    init(text: String, file: String) {
        self.file = file
        // `isNewline` also splits "\r\n", which Swift treats as one character.
        self.lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
    }

    mutating func expectHeader(_ required: [String]) throws {
        while position < lines.count {
            let line = lines[position].trimmingCharacters(in: .whitespaces)
            position += 1
            if line.isEmpty || line.hasPrefix("#") { continue }
            header = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard header.count >= required.count, Array(header.prefix(required.count)) == required else {
                throw TraceError(file: file, line: position, "expected the header \(required.joined(separator: ",")), found \(line.prefix(80))")
            }
            return
        }
        throw TraceError(file: file, "the file is empty")
    }

    mutating func next() throws -> CSVRow? {
        while position < lines.count {
            let raw = lines[position]
            position += 1
            let line = raw
            if line.allSatisfy({ $0 == " " }) || line.hasPrefix("#") { continue }
            if line.contains("\"") { throw TraceError(file: file, line: position, "quoted fields are not supported") }
            return CSVRow(fields: line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) },
                          line: position, file: file, header: header)
        }
        return nil
    }
}

struct CSVRow {
    var fields: [String]
    var line: Int
    var file: String
    var header: [String]

    func name(_ i: Int) -> String { i < header.count ? header[i] : "column \(i + 1)" }

    func error(_ message: String) -> TraceError { TraceError(file: file, line: line, message) }

    func text(_ i: Int) throws -> String {
        guard i < fields.count else { throw error("missing \(name(i))") }
        guard !fields[i].isEmpty else { throw error("empty \(name(i))") }
        return fields[i]
    }

    func optionalText(_ i: Int) -> String? { i < fields.count && !fields[i].isEmpty ? fields[i] : nil }

    func int(_ i: Int, min: Int, max: Int = .max) throws -> Int {
        let t = try text(i)
        guard let v = Int(t) ?? Double(t).flatMap({ $0 == $0.rounded() && abs($0) < 1e15 ? Int($0) : nil }) else { throw error("\(name(i)) '\(t)' is not a whole number") }
        guard v >= min, v <= max else { throw error("\(name(i)) \(v) is out of range") }
        return v
    }

    func optionalInt(_ i: Int, min: Int, max: Int) throws -> Int? {
        optionalText(i) == nil ? nil : try int(i, min: min, max: max)
    }

    func int64(_ i: Int, min: Int64) throws -> Int64 {
        let t = try text(i)
        guard let v = Int64(t) ?? Double(t).flatMap({ $0 == $0.rounded() && abs($0) < 1e17 ? Int64($0) : nil }) else { throw error("\(name(i)) '\(t)' is not a whole number") }
        guard v >= min else { throw error("\(name(i)) \(v) is out of range") }
        return v
    }

    /// Seconds (whole or decimal) as milliseconds.
    func seconds(_ i: Int) throws -> Int64 {
        let t = try text(i)
        guard let v = Double(t), v.isFinite, v >= 0, v < 1e12 else { throw error("\(name(i)) '\(t)' is not a duration in seconds") }
        return Int64((v * 1000).rounded())
    }

    /// `YYYY-MM-DD HH:MM:SS` (no zone) as seconds since 1970-01-01 00:00:00 of the same zone.
    func timestamp(_ i: Int) throws -> Int64 {
        let t = try text(i)
        let parts = t.split(whereSeparator: { $0 == "-" || $0 == " " || $0 == ":" || $0 == "T" }).map { Int64($0) }
        guard parts.count == 6, parts.allSatisfy({ $0 != nil }) else { throw error("\(name(i)) '\(t)' is not YYYY-MM-DD HH:MM:SS") }
        let p = parts.map { $0! }
        guard (1...12).contains(p[1]), (1...31).contains(p[2]), p[3] < 24, p[4] < 60, p[5] < 61 else { throw error("\(name(i)) '\(t)' is not a valid time") }
        return Self.daysFromCivil(year: p[0], month: p[1], day: p[2]) * 86_400 + p[3] * 3600 + p[4] * 60 + p[5]
    }

    /// Howard Hinnant's days-from-civil: days since 1970-01-01 in the proleptic Gregorian calendar.
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}
