@testable import FastGPUAgent
import Foundation
import Testing

@Suite struct CgroupsTests {
    /// This machine's mountinfo (hybrid: v1 controllers plus a v2 mount with only hugetlb).
    static let hybrid = """
        1140 1139 0:201 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
        1141 1140 0:31 / /sys/fs/cgroup/cpu rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu
        1142 1140 0:32 / /sys/fs/cgroup/cpuacct rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpuacct
        1145 1140 0:35 /process_api/b61d /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
        1150 1140 0:40 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw
        """

    @Test func mountPointsByTypeAndController() {
        #expect(Cgroups.mountPoints(Self.hybrid, type: "cgroup2") == ["/sys/fs/cgroup/unified"])
        #expect(Cgroups.mountPoints(Self.hybrid, type: "cgroup", option: "cpu") == ["/sys/fs/cgroup/cpu"])
        #expect(Cgroups.mountPoints(Self.hybrid, type: "cgroup", option: "memory") == ["/sys/fs/cgroup/memory"])
        #expect(Cgroups.mountPoints(Self.hybrid, type: "cgroup", option: "pids").isEmpty)
    }

    @Test func hybridMachinesUseTheV1Controllers() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cgroups-\(UInt64.random(in: 0...UInt64.max))").path
        for directory in ["cpu", "memory", "unified"] {
            try FileManager.default.createDirectory(atPath: root + "/" + directory, withIntermediateDirectories: true)
        }
        try "hugetlb\n".write(toFile: root + "/unified/cgroup.controllers", atomically: true, encoding: .utf8)
        let mountinfo = Self.hybrid.replacingOccurrences(of: " /sys/fs/cgroup", with: " " + root)
        try mountinfo.write(toFile: root + "/mountinfo", atomically: true, encoding: .utf8)
        try "4:memory:/process_api/b61d\n1:cpu:/\n0::/\n".write(toFile: root + "/self", atomically: true, encoding: .utf8)
        let cgroups = Cgroups.detect(node: "gpu 7", root: root, selfCgroup: root + "/self", mountinfo: root + "/mountinfo")
        #expect(cgroups.mode == .v1(cpu: root + "/cpu/fastgpu-gpu_7", memory: root + "/memory/process_api/b61d/fastgpu-gpu_7"))
        #expect(cgroups.summary.hasPrefix("cgroup v1: CPU and memory limits enforced"))
    }

    /// A container's group goes inside the allocation's: v1 names the memory group (the cpu one
    /// may sit elsewhere in its hierarchy), v2 the group above the wrapper's leaf.
    @Test func theContainersParentIsTheAllocationsGroupInItsHierarchy() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cgparent-\(UInt64.random(in: 0...UInt64.max))").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let v2 = "1 0 0:40 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
        try v2.write(toFile: root + "/v2", atomically: true, encoding: .utf8)
        try Self.hybrid.write(toFile: root + "/hybrid", atomically: true, encoding: .utf8)
        let leaf = "/sys/fs/cgroup/system.slice/fastgpu-n/alloc-7/workload/cgroup.procs"
        #expect(Cgroups.allocationGroup(of: leaf) == "/sys/fs/cgroup/system.slice/fastgpu-n/alloc-7")
        #expect(Cgroups.containerParent([leaf], mountinfo: root + "/v2") == "/system.slice/fastgpu-n/alloc-7")
        let v1 = ["/sys/fs/cgroup/cpu/fastgpu-n/alloc-7/cgroup.procs", "/sys/fs/cgroup/memory/process_api/b61d/fastgpu-n/alloc-7/cgroup.procs"]
        #expect(Cgroups.allocationGroup(of: v1[0]) == "/sys/fs/cgroup/cpu/fastgpu-n/alloc-7")
        #expect(Cgroups.containerParent(v1, mountinfo: root + "/hybrid") == "/process_api/b61d/fastgpu-n/alloc-7")
        #expect(Cgroups.containerParent([], mountinfo: root + "/hybrid") == nil)
    }

    @Test func noControllersMeansNoLimitsAndSaysSo() throws {
        let cgroups = Cgroups.detect(node: "n", selfCgroup: "/nonexistent", mountinfo: "/nonexistent")
        #expect(!cgroups.enforced)
        #expect(cgroups.summary.contains("NOT enforced"))
        #expect(try cgroups.create(allocation: 1, cpuMillis: 1000, memoryMiB: 1024).isEmpty)
    }

    /// The wrapper joins every group before it runs the command, and a group it cannot join
    /// stops the job (125) instead of running it unlimited.
    @Test func theWrapperJoinsItsGroupsFirst() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("wrapper-\(UInt64.random(in: 0...UInt64.max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let procs = directory + "/it's procs"
        FileManager.default.createFile(atPath: procs, contents: nil)
        func run(_ script: String) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", script, "fastgpu-workload", "sh", "-c", "echo ran"]
            process.currentDirectoryURL = URL(fileURLWithPath: directory)
            try process.run()
            process.waitUntilExit()
        }
        try run(Agent.wrapper(joining: [procs]))
        let pid = try String(contentsOfFile: directory + "/pid", encoding: .utf8)
        #expect(try String(contentsOfFile: procs, encoding: .utf8) == pid)
        #expect(try String(contentsOfFile: directory + "/stdout", encoding: .utf8) == "ran\n")
        #expect(try String(contentsOfFile: directory + "/exit-code", encoding: .utf8) == "0\n")
        for file in ["claimed", "pid", "stdout", "exit-code"] { try FileManager.default.removeItem(atPath: directory + "/" + file) }
        try run(Agent.wrapper(joining: [directory + "/missing/cgroup.procs"]))
        #expect(try String(contentsOfFile: directory + "/exit-code", encoding: .utf8) == "125\n")
        let output = FileManager.default.contents(atPath: directory + "/stdout") ?? Data()
        #expect(output.isEmpty)
    }
}
