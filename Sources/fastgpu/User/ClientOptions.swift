import ArgumentParser
import AsyncHTTPClient
import FastGPUClient
import FastGPUWire
import Foundation

/// Where the user CLI finds its server and token. Each comes from the first of: the flag, the
/// environment (`FASTGPU_SERVER`, `FASTGPU_TOKEN`, `FASTGPU_PROJECT`), the file `fastgpu login`
/// wrote (`~/.config/fastgpu/config.json`, or `FASTGPU_CONFIG`), and for a local FastGPU the
/// defaults of `fastgpu up`: http://127.0.0.1:8470 and the admin token in ~/.fastgpu.
struct ClientOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The FastGPU server's URL, or several control planes' URLs, comma-separated (FASTGPU_SERVER).", valueName: "url"))
    var server: String?

    @Option(help: ArgumentHelp("An API token (default: the one `fastgpu login` saved).", valueName: "token"))
    var token: String?

    @Option(help: ArgumentHelp("PEM file of the CA that signed an https server's certificate (or FASTGPU_CA_FILE; login saves it).", valueName: "file"))
    var caFile: String?

    /// A client of the server, which is known to listen.
    func client() async throws -> FastGPUClient {
        let config = CLIConfig.load()
        let environment = ProcessInfo.processInfo.environment
        let server = self.server ?? environment["FASTGPU_SERVER"] ?? config.server ?? CLIConfig.localServer
        // Several control planes of one cluster: a comma-separated list, used in turn when one fails.
        let urls = ServerList(server).urls
        guard urls.count <= 16 else { throw CommandFailure("at most 16 server URLs, not \(urls.count)") }
        for candidate in urls {
            guard let url = URL(string: candidate), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
                throw CommandFailure("the server URL must look like http://HOST:PORT (or several, comma-separated), not '\(candidate.prefix(200))'")
            }
        }
        guard let url = URL(string: urls[0]) else { throw CommandFailure("no server URL") }
        // The saved token goes only to the server it was saved for (a --server elsewhere gets none).
        let savedFor = (config.server ?? CLIConfig.localServer).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        var token = self.token ?? environment["FASTGPU_TOKEN"] ?? (savedFor == server.trimmingCharacters(in: CharacterSet(charactersIn: "/")) ? config.token : nil)
        if token == nil, ["127.0.0.1", "localhost", "::1"].contains(url.host ?? "") { token = CLIConfig.localAdminToken() }
        guard let token, !token.isEmpty else {
            throw CommandFailure("no API token: run `fastgpu login --server \(server) --token TOKEN`, or set FASTGPU_TOKEN")
        }
        let caFile = self.caFile ?? environment["FASTGPU_CA_FILE"] ?? config.caFile
        let http: HTTPClient
        do { http = try FastGPUClient.http(caFile: caFile) } catch { throw CommandFailure("\(error)") }
        let client = FastGPUClient(server: server, token: token, http: http, caFile: caFile)
        try await client.checkReachable()
        return client
    }

    /// The project to submit to and list: flag, environment, saved, or `default`.
    static func project(_ flag: String?) -> String {
        flag ?? ProcessInfo.processInfo.environment["FASTGPU_PROJECT"] ?? CLIConfig.load().project ?? "default"
    }
}

/// `--output table|json` of every listing.
struct OutputOptions: ParsableArguments {
    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json }

    @Option(name: [.short, .long], help: "table (for people) or json (the API's objects, for programs).")
    var output: Format = .table

    var json: Bool { output == .json }
}

/// What `fastgpu login` saves, readable only by its owner.
struct CLIConfig: Codable {
    var server: String?
    var token: String?
    var project: String?
    var caFile: String?

    static let localServer = "http://127.0.0.1:8470"

    static var home: String {
        ProcessInfo.processInfo.environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
    }

    static var path: String {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["FASTGPU_CONFIG"], !path.isEmpty { return path }
        let base = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? home + "/.config"
        return base + "/fastgpu/config.json"
    }

    static func load() -> CLIConfig {
        guard let data = FileManager.default.contents(atPath: path) else { return CLIConfig() }
        return (try? JSONDecoder().decode(CLIConfig.self, from: data)) ?? CLIConfig()
    }

    func save() throws {
        let path = Self.path
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw CommandFailure("cannot write \(temporary)")
        }
        guard rename(temporary, path) == 0 else { throw CommandFailure("cannot write \(path): \(String(cString: strerror(errno)))") }
    }

    /// The admin token of a `fastgpu up` with its default data directory, when it is readable.
    static func localAdminToken() -> String? {
        let path = home + "/.fastgpu/admin-token"
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return token.isEmpty ? nil : token
    }
}

// MARK: - Output

enum Output {
    /// Written at once, not buffered: people and programs reading a pipe see each line as it comes.
    static func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    static func error(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    static func json<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        write(String(decoding: try encoder.encode(value), as: UTF8.self) + "\n")
    }

    /// `key  value` lines, the keys padded to the widest.
    static func pairs(_ rows: [[String]]) -> String {
        String(table(["", ""], rows).drop { $0 != "\n" }.dropFirst())
    }

    /// Columns padded to their widest cell, as kubectl and squeue print them.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            var text = ""
            for (i, cell) in cells.enumerated() {
                if i == cells.count - 1 { text += cell } else { text += cell.padding(toLength: widths[i] + 2, withPad: " ", startingAt: 0) }
            }
            return text + "\n"
        }
        return line(header) + rows.map(line).joined()
    }
}

// MARK: - Times

enum WireTime {
    static func parse(_ text: String?) -> Date? {
        guard let text else { return nil }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }

    /// `42s`, `3m`, `2h05m`, `3d`.
    static func span(_ seconds: Double) -> String {
        let s = Int(max(0, seconds.rounded()))
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m" + (s % 60 == 0 || s >= 600 ? "" : String(format: "%02ds", s % 60)) }
        if s < 86400 { return "\(s / 3600)h" + String(format: "%02dm", s / 60 % 60) }
        return "\(s / 86400)d" + String(format: "%02dh", s / 3600 % 24)
    }

    static func age(_ text: String?, now: Date = Date()) -> String {
        guard let date = parse(text) else { return "-" }
        return span(now.timeIntervalSince(date)) + " ago"
    }

    static func until(_ text: String?, now: Date = Date()) -> String? {
        guard let date = parse(text) else { return nil }
        let seconds = date.timeIntervalSince(now)
        return seconds <= 0 ? "now" : "in " + span(seconds)
    }
}
