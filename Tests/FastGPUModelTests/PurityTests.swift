import Foundation
import Testing

/// The pure core imports only the standard library and swift-collections, and never reads a
/// clock, mints a UUID or draws unseeded randomness (ARCHITECTURE.md). This test reads the
/// sources, so it fails the suite the moment one of those enters.
@Suite struct PurityTests {
    static let pureTargets = ["FastGPUModel", "FastGPUScheduler"]
    static let allowedModules: Set<String> = ["FastGPUModel", "FastGPUScheduler", "Collections", "HeapModule", "DequeModule", "OrderedCollections", "BitCollections", "HashTreeCollections", "RopeModule"]
    /// Patterns that mean I/O, a clock, a UUID, unseeded randomness or concurrency.
    static let forbidden: [(pattern: String, why: String)] = [
        (#"\bDate\s*\("#, "reads the wall clock"),
        (#"\bUUID\s*\("#, "mints a UUID"),
        (#"SystemRandomNumberGenerator"#, "unseeded randomness"),
        (#"\.random\(\s*(in:[^,()]*)?\)"#, "unseeded randomness (pass a seeded generator with using:)"),
        (#"\.shuffled\(\)"#, "unseeded randomness"),
        (#"\b(ContinuousClock|SuspendingClock)\b"#, "reads a clock"),
        (#"[Cc]lock\w*(\(\))?\.now\b"#, "reads a clock"),
        (#"\b(async|await)\b"#, "the core is synchronous"),
        (#"\bTask\s*[\{\(]"#, "starts concurrent work"),
        (#"\b(fopen|getenv|gettimeofday|clock_gettime)\b"#, "system call"),
    ]

    static func sources(of target: String) throws -> [URL] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let directory = root.appendingPathComponent("Sources").appendingPathComponent(target)
        let files = try FileManager.default.subpathsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".swift") }
        return files.map { directory.appendingPathComponent($0) }
    }

    @Test(arguments: pureTargets)
    func importsOnlyTheStandardLibraryAndCollections(target: String) throws {
        let files = try Self.sources(of: target)
        #expect(!files.isEmpty)
        let importLine = try Regex(#"^\s*(?:@\w+\s+)*(?:public |package |internal |private |fileprivate )?import\s+(?:(?:struct|class|enum|protocol|func|var|let|typealias)\s+)?(\w+)"#)
        for file in files {
            for line in try String(contentsOf: file, encoding: .utf8).split(separator: "\n") {
                guard let match = try importLine.firstMatch(in: String(line)), let module = match.output[1].substring else { continue }
                #expect(Self.allowedModules.contains(String(module)), "\(file.lastPathComponent) imports \(module)")
            }
        }
    }

    @Test(arguments: pureTargets)
    func noClockUUIDOrUnseededRandomness(target: String) throws {
        for file in try Self.sources(of: target) {
            let text = try String(contentsOf: file, encoding: .utf8)
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let code = line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
                for (pattern, why) in Self.forbidden where try Regex(pattern).firstMatch(in: code) != nil {
                    Issue.record("\(file.lastPathComponent):\(number + 1) \(why): \(line.trimmingCharacters(in: .whitespaces))")
                }
            }
        }
    }

    /// The store's protocol target names no database library: a PostgreSQL store goes beside
    /// the SQLite one, and the control plane cannot reach past the protocol into GRDB.
    @Test(arguments: ["FastGPUStore", "FastGPUControlPlane", "FastGPUAPI"])
    func noDatabaseLibraryBehindTheStoreProtocol(target: String) throws {
        let files = try Self.sources(of: target)
        #expect(!files.isEmpty)
        for file in files {
            for line in try String(contentsOf: file, encoding: .utf8).split(separator: "\n") where line.contains("import GRDB") || line.contains("import SQLite") {
                Issue.record("\(target)/\(file.lastPathComponent): \(line)")
            }
        }
    }

    /// The check itself must catch what it is for: a test that cannot fail is worse than none.
    @Test func forbiddenPatternsCatchTheirExamples() throws {
        let examples = ["let t = Date()", "let id = UUID()", "var g = SystemRandomNumberGenerator()", "Int.random(in: 0..<3)",
                        "xs.shuffled()", "let c = ContinuousClock()", "await x()", "Task { }", "let now = clock.now", "ContinuousClock().now", "Bool.random()"]
        for example in examples {
            #expect(try Self.forbidden.contains { try Regex($0.pattern).firstMatch(in: example) != nil }, "\(example) passed the check")
        }
        #expect(try !Self.forbidden.contains { try Regex($0.pattern).firstMatch(in: "Int.random(in: 0..<3, using: &rng)") != nil })
    }
}
