@testable import FastGPUAgent
import FastGPUWire
import Foundation
import Testing

@Suite struct GPUDeviceWiringTests {
    /// `ls /dev` of an 8-GPU node with the UVM and modeset modules loaded and MIG capabilities.
    static let present: Set<String> = Set((0..<8).map { "nvidia\($0)" } + ["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset",
                                                                            "nvidia-caps/nvidia-cap1", "nvidia-caps/nvidia-cap2",
                                                                            "nvidia-caps/nvidia-cap30", "nvidia-caps/nvidia-cap31"])
    /// `/proc/driver/nvidia-caps/mig-minors` as the driver writes it (excerpt).
    static let migMinors = """
        config 1
        monitor 2
        gpu0/gi0/access 3
        gpu0/gi0/ci0/access 4
        gpu3/gi2/access 30
        gpu3/gi2/ci0/access 31
        """

    static func node(mps: String? = nil) throws -> GPUDeviceWiring.Node {
        var gpus = try NvidiaSMIParser.parseQuery(try fixture("hgx-h100x8.query.csv"), fields: Array(NvidiaSMIProbe.queryFields.prefix(9)))
        gpus[3].migDevices = [MIGDevice(profile: "1g.10gb", deviceIndex: 0, uuid: "MIG-aaaa", gpuInstance: 2, computeInstance: 0)]
        return GPUDeviceWiring.Node(gpus: gpus, deviceRoot: "/dev", present: present, migMinors: GPUDeviceWiring.parseMIGMinors(migMinors), mpsPipeDirectory: mps)
    }

    static func fixture(_ name: String) throws -> String {
        let url = try #require(Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures"))
        return try String(contentsOf: url, encoding: .utf8)
    }

    @Test func wholeGPUsGetTheirNodesAndTheControlDevicesAndCountFromZeroInAContainer() throws {
        let wiring = GPUDeviceWiring.wiring(for: [DeviceSlotWire(gpu: 2, kind: "whole"), DeviceSlotWire(gpu: 5, kind: "whole")],
                                            gpuMemoryLimitMiB: nil, node: try Self.node(), renumbered: true)
        #expect(wiring.deviceNodes == ["/dev/nvidia2", "/dev/nvidia5", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"])
        #expect(wiring.environment["CUDA_VISIBLE_DEVICES"] == "0,1")
        #expect(wiring.maskedNodes == ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidia3", "/dev/nvidia4", "/dev/nvidia6", "/dev/nvidia7",
                                       "/dev/nvidia-caps/nvidia-cap1", "/dev/nvidia-caps/nvidia-cap2", "/dev/nvidia-caps/nvidia-cap30", "/dev/nvidia-caps/nvidia-cap31"])
        let host = GPUDeviceWiring.wiring(for: [DeviceSlotWire(gpu: 2, kind: "whole"), DeviceSlotWire(gpu: 5, kind: "whole")],
                                          gpuMemoryLimitMiB: nil, node: try Self.node(), renumbered: false)
        #expect(host.environment["CUDA_VISIBLE_DEVICES"] == "2,5", "a host process keeps the node's indices")
    }

    @Test func aMIGSliceIsItsParentAndItsInstancesCapabilities() throws {
        let wiring = GPUDeviceWiring.wiring(for: [DeviceSlotWire(gpu: 3, kind: "mig", profile: "1g.10gb", start: 0)],
                                            gpuMemoryLimitMiB: nil, node: try Self.node(), renumbered: true)
        #expect(wiring.deviceNodes.prefix(3) == ["/dev/nvidia3", "/dev/nvidia-caps/nvidia-cap30", "/dev/nvidia-caps/nvidia-cap31"])
        #expect(!wiring.deviceNodes.contains("/dev/nvidia-caps/nvidia-cap3"), "not another GPU's instance")
        #expect(wiring.environment["CUDA_VISIBLE_DEVICES"] == "MIG-aaaa")
        #expect(wiring.maskedNodes.filter { $0.contains("nvidia-caps") } == ["/dev/nvidia-caps/nvidia-cap1", "/dev/nvidia-caps/nvidia-cap2"],
                "a host process cannot open another instance's or the driver's MIG capabilities")
    }

    @Test func aShareIsHeldByMPSWhereADaemonRunsAndSaysSoWhereNot() throws {
        let share = [DeviceSlotWire(gpu: 1, kind: "share", milli: 250, memoryMiB: 20_480)]
        let held = GPUDeviceWiring.wiring(for: share, gpuMemoryLimitMiB: 20_480, node: try Self.node(mps: "/run/nvidia-mps"), renumbered: true)
        #expect(held.environment["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=20480M")
        #expect(held.environment["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25")
        #expect(held.environment["CUDA_MPS_PIPE_DIRECTORY"] == "/run/nvidia-mps")
        #expect(held.environment["FASTGPU_GPU_MEMORY_LIMIT_ENFORCED"] == "mps")
        let unheld = GPUDeviceWiring.wiring(for: share, gpuMemoryLimitMiB: 20_480, node: try Self.node(), renumbered: true)
        #expect(unheld.environment["FASTGPU_GPU_MEMORY_LIMIT_ENFORCED"] == "none")
        #expect(unheld.environment["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == nil)
        #expect(unheld.environment["FASTGPU_GPU_MEMORY_LIMIT_MIB"] == "20480")
    }

    @Test func noGPUsMeansNoDeviceAtAll() throws {
        let wiring = GPUDeviceWiring.wiring(for: [], gpuMemoryLimitMiB: nil, node: try Self.node(), renumbered: true)
        #expect(wiring.deviceNodes.isEmpty)
        #expect(wiring.maskedNodes.count == 12)
        #expect(wiring.environment["CUDA_VISIBLE_DEVICES"] == "")
    }

    @Test func theCDISpecNamesEveryGPUAndMIGInstance() throws {
        let spec = GPUDeviceWiring.cdiSpec(node: try Self.node())
        #expect(spec["kind"] as? String == "fastgpu.io/gpu")
        #expect(spec["cdiVersion"] as? String == "0.5.0")
        let devices = spec["devices"] as? [[String: Any]] ?? []
        #expect(devices.compactMap { $0["name"] as? String } == ["0", "1", "2", "3", "MIG-aaaa", "4", "5", "6", "7"])
        let mig = devices.first { $0["name"] as? String == "MIG-aaaa" }
        let nodes = ((mig?["containerEdits"] as? [String: Any])?["deviceNodes"] as? [[String: String]])?.compactMap { $0["path"] }
        #expect(nodes == ["/dev/nvidia3", "/dev/nvidia-caps/nvidia-cap30", "/dev/nvidia-caps/nvidia-cap31"])
        let common = ((spec["containerEdits"] as? [String: Any])?["deviceNodes"] as? [[String: String]])?.compactMap { $0["path"] }
        #expect(common == ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"])
        #expect(JSONSerialization.isValidJSONObject(spec))
    }

    @Test func aSubordinateRangeThatMeetsTheProjectsUsersIsFound() {
        #expect(Agent.subordinateOverlap(base: 200_000, text: "alice:100000:65536\nbob:165536:65536\n") == "bob 165536-231071")
        #expect(Agent.subordinateOverlap(base: 200_000, text: "alice:100000:65536\n") == nil)
        #expect(Agent.subordinateOverlap(base: 200_000, text: "junk\n:x:y\n") == nil)
    }

    @Test func projectUsersHaveRangesOfTheirOwnWithin32Bits() {
        #expect(WorkloadSandbox.projectUID(project: 1, base: 200_000) == 265_536)
        #expect(WorkloadSandbox.projectUID(project: 2, base: 200_000) == 331_072)
        #expect(WorkloadSandbox.projectUID(project: 65_535, base: 200_000) == nil)
        #expect(WorkloadSandbox.projectUID(project: UInt64.max, base: 200_000) == nil)
    }

    @Test func anIsolatedHostProcessDropsToItsUserLastAndNoneCutsTheNetwork() {
        let prefix = WorkloadSandbox.isolatedHostPrefix(uid: 265_536, work: "/data/allocations/7/work", hidden: ["/data"],
                                                        masked: ["/dev/nvidia1"], network: .none)
        #expect(Array(prefix.prefix(6)) == ["unshare", "--mount", "--propagation", "private", "--ipc", "--net"])
        #expect(prefix[prefix.count - 2].contains("ip link set lo up"), "none is loopback, up")
        let script = prefix[prefix.count - 2]
        #expect(script.hasSuffix(#"exec setpriv --reuid=265536 --regid=265536 --clear-groups --no-new-privs --bounding-set=-all --inh-caps=-all -- "$@""#))
        #expect(script.contains("mount --bind /tmp/.fastgpu-masked '/dev/nvidia1'"))
        #expect(script.contains("mount -t proc -o hidepid=invisible"))
        let host = WorkloadSandbox.isolatedHostPrefix(uid: 265_536, work: "/w", hidden: [], masked: [], network: .host)
        #expect(!host.contains("--net"))
    }

    /// On a machine with an NVIDIA driver: the wiring made from the real probe and the real
    /// `/dev` names a node for every GPU and the control device, and nothing of another GPU.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/dev/nvidiactl") && FileManager.default.isExecutableFile(atPath: "/usr/bin/nvidia-smi"),
                   "needs an NVIDIA GPU"))
    func theRealDevicesAreWiredAsRecorded() throws {
        let gpus = try NvidiaSMIProbe().probe()
        try #require(!gpus.isEmpty)
        let node = GPUDeviceWiring.Node(gpus: gpus, deviceRoot: "/dev", present: GPUDeviceWiring.presentDevices(under: "/dev"),
                                        migMinors: (try? String(contentsOfFile: "/proc/driver/nvidia-caps/mig-minors", encoding: .utf8)).map(GPUDeviceWiring.parseMIGMinors) ?? [:],
                                        mpsPipeDirectory: nil)
        for gpu in gpus where !gpu.migEnabled {
            let wiring = GPUDeviceWiring.wiring(for: [DeviceSlotWire(gpu: gpu.index, kind: "whole")], gpuMemoryLimitMiB: nil, node: node, renumbered: true)
            #expect(wiring.deviceNodes.first == "/dev/nvidia\(gpu.index)", "GPU \(gpu.index)'s node exists under its index")
            #expect(wiring.deviceNodes.contains("/dev/nvidiactl"))
            #expect(wiring.maskedNodes.filter { !$0.contains("nvidia-caps") }.count == gpus.count - 1)
            #expect(wiring.environment["CUDA_VISIBLE_DEVICES"] == "0")
        }
    }
}
