import Foundation

/// CPU and memory limits for workloads, through the cgroups the machine lets the agent write:
/// the unified hierarchy (v2) where `cpu` and `memory` are enabled there, else the v1 `cpu` and
/// `memory` controllers (hybrid machines mount both and keep these two in v1).
///
/// Each allocation gets its own group under the agent's own cgroup; the workload's wrapper joins
/// it (writes its pid to `cgroup.procs`) before it runs the command, so every process the job
/// starts is inside, and nothing runs unlimited in between.
/// - CPU: a CFS quota of the allocation's millicores per 100 ms period (`cpu.max`, or
///   `cpu.cfs_quota_us`): the job gets the cores it asked for, and not more, when others want them.
/// - Memory: a hard limit (`memory.max`, or `memory.limit_in_bytes`): past it, the kernel's
///   OOM killer ends the job's largest process, and the job fails with 137.
struct Cgroups: Sendable {
    enum Mode: Sendable, Equatable {
        /// Groups are made under `base` (v2).
        case unified(base: String)
        /// Groups are made under `cpu` and `memory` (v1).
        case v1(cpu: String, memory: String)
        /// Limits are not enforced, and why.
        case unavailable(String)
    }

    let mode: Mode

    var summary: String {
        switch mode {
        case .unified(let base): "cgroup v2: CPU and memory limits enforced under \(base)"
        case .v1(let cpu, let memory): "cgroup v1: CPU and memory limits enforced under \(cpu) and \(memory)"
        case .unavailable(let why): "cgroups unavailable (\(why)); CPU and memory limits are NOT enforced"
        }
    }

    var enforced: Bool {
        if case .unavailable = mode { return false }
        return true
    }

    /// Finds what this machine allows and prepares the agent's parent groups.
    static func detect(node: String, root: String = "/sys/fs/cgroup", selfCgroup: String = "/proc/self/cgroup",
                       mountinfo: String = "/proc/self/mountinfo") -> Cgroups {
        let memberships = (try? String(contentsOfFile: selfCgroup, encoding: .utf8)) ?? ""
        let mounts = (try? String(contentsOfFile: mountinfo, encoding: .utf8)) ?? ""
        let leaf = "fastgpu-" + node.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }.map(String.init).joined()
        var reasons: [String] = []

        // v2: the unified mount, with cpu and memory among its controllers.
        if let unified = mountPoints(mounts, type: "cgroup2").first,
           let controllers = try? String(contentsOfFile: unified + "/cgroup.controllers", encoding: .utf8) {
            let available = Set(controllers.split(whereSeparator: \.isWhitespace).map(String.init))
            if available.isSuperset(of: ["cpu", "memory"]) {
                let own = memberships.split(separator: "\n").first { $0.hasPrefix("0::") }.map { String($0.dropFirst(3)) } ?? "/"
                switch prepareUnified(parent: unified + (own == "/" ? "" : own), leaf: leaf) {
                case .success(let base): return Cgroups(mode: .unified(base: base))
                case .failure(let why): reasons.append("v2: \(why)")
                }
            } else {
                reasons.append("v2 has no cpu and memory controllers (\(available.sorted().joined(separator: " ")))")
            }
        }
        // v1: the cpu and memory hierarchies, each at our own path in it.
        var v1: [String: String] = [:]
        for controller in ["cpu", "memory"] {
            guard let mount = mountPoints(mounts, type: "cgroup", option: controller).first else { continue }
            let own = memberships.split(separator: "\n").compactMap { line -> String? in
                let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                guard parts.count == 3, parts[1].split(separator: ",").contains(Substring(controller)) else { return nil }
                return String(parts[2])
            }.first ?? "/"
            let base = mount + (own == "/" ? "" : own) + "/" + leaf
            do {
                try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
                v1[controller] = base
            } catch {
                reasons.append("v1 \(controller): cannot create \(base): \(shortError(error))")
            }
        }
        if let cpu = v1["cpu"], let memory = v1["memory"] { return Cgroups(mode: .v1(cpu: cpu, memory: memory)) }
        if reasons.isEmpty { reasons.append("no writable cpu and memory cgroup controllers are mounted") }
        return Cgroups(mode: .unavailable(reasons.joined(separator: "; ")))
    }

    /// In v2 a group with processes cannot hand controllers to children, so the agent first
    /// moves itself into a leaf of its own, then enables cpu and memory for its workloads' groups.
    private static func prepareUnified(parent: String, leaf: String) -> Result<String, CgroupError> {
        let agentGroup = parent + "/fastgpu-agent"
        let base = parent + "/" + leaf
        do {
            try FileManager.default.createDirectory(atPath: agentGroup, withIntermediateDirectories: true)
            try write(String(getpid()), to: agentGroup + "/cgroup.procs")
            try write("+cpu +memory", to: parent + "/cgroup.subtree_control")
            try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
            try write("+cpu +memory", to: base + "/cgroup.subtree_control")
            return .success(base)
        } catch let error as CgroupError {
            return .failure(error)
        } catch {
            return .failure(CgroupError(description: shortError(error)))
        }
    }

    /// Makes the allocation's groups with its limits; returns the `cgroup.procs` files its
    /// wrapper joins.
    func create(allocation: UInt64, cpuMillis: Int, memoryMiB: Int) throws -> [String] {
        let name = "alloc-\(allocation)"
        switch mode {
        case .unavailable:
            return []
        case .unified(let base):
            let group = base + "/" + name
            try makeDirectory(group)
            if cpuMillis > 0 { try Self.write("\(cpuMillis * 100) 100000", to: group + "/cpu.max") }
            if memoryMiB > 0 {
                try Self.write(String(memoryMiB << 20), to: group + "/memory.max")
                try? Self.write("0", to: group + "/memory.swap.max")
            }
            // v2 keeps processes out of a group that hands controllers down: the wrapper joins a
            // leaf, so a container runtime can make its own group beside it, under the limits.
            try? Self.write("+cpu +memory", to: group + "/cgroup.subtree_control")
            let leaf = group + "/" + Self.workloadLeaf
            try makeDirectory(leaf)
            return [leaf + "/cgroup.procs"]
        case .v1(let cpu, let memory):
            let cpuGroup = cpu + "/" + name, memoryGroup = memory + "/" + name
            try makeDirectory(cpuGroup)
            try makeDirectory(memoryGroup)
            if cpuMillis > 0 {
                try Self.write("100000", to: cpuGroup + "/cpu.cfs_period_us")
                try Self.write(String(cpuMillis * 100), to: cpuGroup + "/cpu.cfs_quota_us")
            }
            if memoryMiB > 0 {
                try Self.write(String(memoryMiB << 20), to: memoryGroup + "/memory.limit_in_bytes")
                try? Self.write(String(memoryMiB << 20), to: memoryGroup + "/memory.memsw.limit_in_bytes")
            }
            return [cpuGroup + "/cgroup.procs", memoryGroup + "/cgroup.procs"]
        }
    }

    /// The memory limit in bytes, when the kernel's OOM killer ended a process of the group
    /// (`oom_kill` in v2's `memory.events` or v1's `memory.oom_control`).
    static func oomKilled(_ procsFiles: [String]) -> Int? {
        for file in procsFiles {
            let group = allocationGroup(of: file)
            for (events, limit) in [("memory.events", "memory.max"), ("memory.oom_control", "memory.limit_in_bytes")] {
                guard let text = try? String(contentsOfFile: group + "/" + events, encoding: .utf8) else { continue }
                let kills = text.split(separator: "\n").first { $0.hasPrefix("oom_kill ") }.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
                if kills > 0 {
                    let bytes = (try? String(contentsOfFile: group + "/" + limit, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
                    return bytes ?? 0
                }
            }
        }
        return nil
    }

    /// The leaf of a v2 allocation group that its wrapper joins.
    static let workloadLeaf = "workload"

    /// The allocation's group of a `cgroup.procs` file its wrapper joins: its directory, or in
    /// v2 the directory above the `workload` leaf.
    static func allocationGroup(of procsFile: String) -> String {
        let directory = (procsFile as NSString).deletingLastPathComponent
        return (directory as NSString).lastPathComponent == workloadLeaf ? (directory as NSString).deletingLastPathComponent : directory
    }

    /// The allocation's memory group (v1) or its group (v2) as a path inside its hierarchy, which
    /// `podman run --cgroup-parent` takes: the container's own group is made inside it, so the
    /// allocation's memory limit holds it and its processes are the allocation's.
    static func containerParent(_ procsFiles: [String], mountinfo: String = "/proc/self/mountinfo") -> String? {
        let mounts = (try? String(contentsOfFile: mountinfo, encoding: .utf8)) ?? ""
        // v1 gives [cpu, memory] and the memory group is the parent; v2 gives its one group.
        let candidates = procsFiles.count > 1 ? mountPoints(mounts, type: "cgroup", option: "memory") : mountPoints(mounts, type: "cgroup2")
        guard let file = procsFiles.last else { return nil }
        let group = allocationGroup(of: file)
        return candidates.first { group.hasPrefix($0 + "/") }.map { String(group.dropFirst($0.count)) }
    }

    /// Removes an allocation's groups once its processes are gone (the kernel refuses before).
    static func remove(_ procsFiles: [String]) {
        for file in procsFiles {
            let group = allocationGroup(of: file)
            // A container's runtime leaves its own groups inside (`libpod-…`, `conmon`).
            for child in WorkloadProcesses.subgroups(of: group).reversed() { rmdir(child) }
            rmdir(group)
        }
    }

    private func makeDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw CgroupError(description: "cannot create \(path): \(Self.shortError(error))")
        }
    }

    static func write(_ value: String, to path: String) throws {
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else { throw CgroupError(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        guard Foundation.write(fd, bytes, bytes.count) == bytes.count else {
            throw CgroupError(description: "cannot write '\(value)' to \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Mount points of `type` filesystems (with `option` among their super options, for v1).
    static func mountPoints(_ mountinfo: String, type: String, option: String? = nil) -> [String] {
        mountinfo.split(separator: "\n").compactMap { line in
            // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { return nil }
            let left = halves[0].split(separator: " "), right = halves[1].split(separator: " ")
            guard left.count >= 5, right.count >= 3, right[0] == type else { return nil }
            if let option, !right[2].split(separator: ",").contains(Substring(option)) { return nil }
            return String(left[4]).replacingOccurrences(of: "\\040", with: " ")
        }
    }

    private static func shortError(_ error: any Error) -> String {
        if let cocoa = error as? CocoaError, let underlying = cocoa.userInfo[NSUnderlyingErrorKey] as? NSError {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return "\(error)"
    }
}

struct CgroupError: Error, CustomStringConvertible {
    var description: String
}
