import Foundation
import Synchronization

/// XID errors, the driver's error reports, which it writes to the kernel log only
/// (`NVRM: Xid (PCI:0000:3b:00): 79, pid=…, GPU has fallen off the bus.`): nvidia-smi's query has
/// no field for them. The agent reads the records logged since it started from `/dev/kmsg`
/// (where it may: root, or `kernel.dmesg_restrict=0`), counts them per GPU and marks the GPU
/// unhealthy on one that is not the application's own doing.
final class XIDWatch: Sendable {
    /// XIDs an application causes (an illegal address, a page fault, a stop it asked for): counted,
    /// but the GPU stays healthy. The NVIDIA device plugin for Kubernetes skips the same list.
    static let applicationXIDs: Set<Int> = [13, 31, 43, 45, 68, 109]
    /// Records read per probe at most: a flood cannot hold the agent up.
    static let maxRecordsPerRead = 10_000

    struct Seen: Hashable, Sendable {
        var count = 0
        var last: Int
        var message: String
        /// A hardware XID has been seen: the GPU is unhealthy until the agent restarts.
        var fatal: Bool
    }

    private struct State {
        var descriptor: Int32?
        var unavailable = false
        var seen: [String: Seen] = [:]
    }

    private let path: String
    private let state = Mutex(State())

    init(path: String) { self.path = path }

    deinit { state.withLock { if let fd = $0.descriptor { close(fd) } } }

    /// The GPUs with what the kernel said about them since the last read.
    func apply(to gpus: [ProbedGPU]) -> [ProbedGPU] {
        readNew()
        return Self.apply(state.withLock { $0.seen }, to: gpus)
    }

    /// Records kernel log lines (what `readNew` reads; tests give recorded lines).
    func record(lines: [String]) {
        let parsed = lines.compactMap(Self.parse)
        guard !parsed.isEmpty else { return }
        state.withLock { state in
            for (bus, code, message) in parsed {
                var entry = state.seen[bus] ?? Seen(last: code, message: message, fatal: false)
                entry.count += 1
                entry.last = code
                entry.message = message
                entry.fatal = entry.fatal || !Self.applicationXIDs.contains(code)
                state.seen[bus] = entry
            }
        }
    }

    static func apply(_ seen: [String: Seen], to gpus: [ProbedGPU]) -> [ProbedGPU] {
        guard !seen.isEmpty else { return gpus }
        return gpus.map { gpu in
            guard let bus = gpu.pciBusID.flatMap(normalizedBus), let entry = seen[bus] else { return gpu }
            var gpu = gpu
            gpu.xidErrors = entry.count
            gpu.lastXid = entry.last
            if entry.fatal && gpu.healthy {
                gpu.healthy = false
                gpu.healthReason = "Xid \(entry.last)" + (entry.message.isEmpty ? "" : ": \(entry.message)")
            }
            return gpu
        }
    }

    /// `… NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus.` →
    /// the bus (normalized), 79 and the text after the pid and name fields.
    static func parse(_ line: String) -> (bus: String, code: Int, message: String)? {
        guard let start = line.range(of: "NVRM: Xid (") else { return nil }
        let rest = line[start.upperBound...]
        guard let close = rest.range(of: "): ") else { return nil }
        var bus = rest[..<close.lowerBound]
        if bus.hasPrefix("PCI:") { bus = bus.dropFirst(4) }
        let after = rest[close.upperBound...]
        let fields = after.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        guard let first = fields.first, let code = Int(first), (0..<100_000).contains(code), let normalized = normalizedBus(String(bus)) else { return nil }
        let text = fields.dropFirst().filter { !$0.hasPrefix("pid=") && !$0.hasPrefix("name=") }.joined(separator: ", ")
        return (normalized, code, String(text.prefix(200)))
    }

    /// `0000:3b:00` (the kernel) and `00000000:3B:00.0` (nvidia-smi) both become `0:3b:00`.
    static func normalizedBus(_ text: String) -> String? {
        let parts = text.lowercased().split(separator: ":")
        guard parts.count == 3, let domain = Int(parts[0], radix: 16) else { return nil }
        let device = parts[2].split(separator: ".").first ?? ""
        guard Int(parts[1], radix: 16) != nil, Int(device, radix: 16) != nil else { return nil }
        return "\(String(domain, radix: 16)):\(parts[1]):\(device)"
    }

    /// Reads the records logged since the last read (since the first read, at first: what was
    /// logged before the agent started is not this agent's to count).
    private func readNew() {
        var lines: [String] = []
        state.withLock { state in
            guard !state.unavailable else { return }
            if state.descriptor == nil {
                let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
                guard fd >= 0 else { state.unavailable = true; return }
                lseek(fd, 0, SEEK_END)
                state.descriptor = fd
                return
            }
            guard let fd = state.descriptor else { return }
            var buffer = [UInt8](repeating: 0, count: 8192)
            for _ in 0..<Self.maxRecordsPerRead {
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    lines.append(String(decoding: buffer[0..<count], as: UTF8.self))
                } else if count < 0 && errno == EPIPE {
                    continue  // records overwritten before they were read: go on with the next
                } else {
                    break  // EAGAIN: nothing more now
                }
            }
        }
        record(lines: lines)
    }
}
