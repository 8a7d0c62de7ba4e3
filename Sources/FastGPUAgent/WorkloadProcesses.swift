import Foundation

/// Every process of one workload: its process group (the wrapper's pid is its id) and, where the
/// agent made them, the processes in its cgroups — a process that left the group with `setsid`
/// is still in the cgroup.
///
/// A stop is over when this set is empty, not when the wrapper is gone: a workload that ignores
/// SIGTERM (`trap "" TERM`) outlives its wrapper shell, which dies on the signal at once.
/// Zombies do not count: they hold no GPU memory, and PID 1 here may never reap an orphan.
enum WorkloadProcesses {
    /// The live (not zombie) processes of the workload, sorted.
    static func members(group: Int32, cgroups: [String]) -> [Int32] {
        var found: Set<Int32> = []
        if group > 0, let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") {
            for entry in entries {
                guard let pid = Int32(entry), let stat = Stat(pid: pid), stat.processGroup == group, !stat.isZombie else { continue }
                found.insert(pid)
            }
        }
        for path in cgroups {
            // The group and the groups inside it: a container runtime makes its own there.
            let group = Cgroups.allocationGroup(of: path)
            for directory in [group] + subgroups(of: group) {
                guard let text = try? String(contentsOfFile: directory + "/cgroup.procs", encoding: .utf8) else { continue }
                for line in text.split(separator: "\n") {
                    guard let pid = Int32(line), pid > 0, let stat = Stat(pid: pid), !stat.isZombie else { continue }
                    found.insert(pid)
                }
            }
        }
        return found.sorted()
    }

    /// Every group below `group`, parents before children.
    static func subgroups(of group: String) -> [String] {
        var result: [String] = []
        var pending = [group]
        while let next = pending.popLast() {
            guard let entries = try? FileManager.default.contentsOfDirectory(atPath: next) else { continue }
            for entry in entries.sorted() {
                let path = next + "/" + entry
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
                    result.append(path)
                    pending.append(path)
                }
            }
        }
        return result
    }

    /// Sends `signal` to the process group and to every process of the workload's cgroups.
    static func signal(_ signal: Int32, group: Int32, cgroups: [String]) {
        if group > 0 { kill(-group, signal) }
        for pid in members(group: 0, cgroups: cgroups) { kill(pid, signal) }
    }

    /// The fields of `/proc/PID/stat` the agent reads. The command name (field 2) is in
    /// parentheses and may hold spaces and parentheses itself, so fields are counted after the last `)`.
    struct Stat {
        var state: Character
        var processGroup: Int32
        /// utime + stime, in clock ticks.
        var cpuTicks: UInt64

        var isZombie: Bool { state == "Z" || state == "X" }

        init?(pid: Int32) {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = text.lastIndex(of: ")") else { return nil }
            // After the name: state, ppid, pgrp, ...
            let fields = text[text.index(after: close)...].split(separator: " ")
            guard fields.count >= 3, let state = fields[0].first, let group = Int32(fields[2]) else { return nil }
            self.state = state
            processGroup = group
            // utime and stime are fields 14 and 15 of the line: 11 and 12 after the name.
            cpuTicks = fields.count > 12 ? (UInt64(fields[11]) ?? 0) + (UInt64(fields[12]) ?? 0) : 0
        }
    }
}
