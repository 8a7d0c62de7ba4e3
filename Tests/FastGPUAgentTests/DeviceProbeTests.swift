@testable import FastGPUAgent
import Foundation
import Testing

@Suite struct DeviceProbeTests {
    /// The query the hand-written recordings answer (the probe's fields before utilisation,
    /// memory used, temperature and corrected ECC were added).
    static let healthFields = Array(NvidiaSMIProbe.queryFields.prefix(9))

    static func fixture(_ name: String) throws -> String {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil))
        return try String(contentsOf: url, encoding: .utf8)
    }

    @Test func anHGXH100BoardIsEightH100s() throws {
        let gpus = try NvidiaSMIParser.parseQuery(try Self.fixture("hgx-h100x8.query.csv"), fields: Self.healthFields)
        #expect(gpus.count == 8)
        #expect(gpus.map(\.index) == Array(0..<8))
        #expect(gpus.allSatisfy { $0.model == "H100-80GB" && $0.memoryMiB == 81559 && $0.healthy && !$0.migEnabled })
        #expect(gpus[0].uuid == "GPU-2f1c3b5e-7a4d-4e0b-9c1f-5d3a8e6b2c41")
        #expect(gpus[0].productName == "NVIDIA H100 80GB HBM3")
        #expect(gpus[4].powerWatts == 699.87)
        #expect(gpus[4].energyMillijoules == 1_957_723_004)
    }

    /// Recorded on a real H200 (driver 580.159.04; scripts/record-nvidia-smi.sh): that driver
    /// knows no `total_energy_consumption`, so the probe asks without it, and it underlines the
    /// header of `topo -m` with terminal escapes.
    @Test func aRecordedH200ReadsWithTheFieldsItsDriverKnows() throws {
        let fields = Self.healthFields.filter { $0 != "total_energy_consumption" }
        let gpus = try NvidiaSMIParser.parseQuery(try Self.fixture("h200.query.csv"), fields: fields)
        #expect(gpus.count == 1)
        let gpu = try #require(gpus.first)
        #expect(gpu.index == 0 && gpu.uuid == "GPU-e68f909f-c803-bfa9-77f8-29f4673e8be6" && gpu.productName == "NVIDIA H200")
        #expect(gpu.model == "H200-141GB" && gpu.memoryMiB == 143_771 && gpu.healthy && !gpu.migEnabled, "\(gpu)")
        #expect(gpu.powerWatts == 79.41 && gpu.energyMillijoules == nil)
        #expect(try NvidiaSMIParser.parseTopology(try Self.fixture("h200.topo.txt")) == [0: 0])
        #expect(try Self.fixture("h200.topo.txt").contains("\u{1B}[4m"), "the recording keeps the escapes")
        // What the driver said, and that the probe recognises it as a field to do without.
        let said = #"nvidia-smi failed (exit 2): Field "total_energy_consumption" is not a valid field to query."#
        #expect(NvidiaSMIParser.unknownField(in: said) == "total_energy_consumption")
        #expect(NvidiaSMIProbe.optionalFields.contains("total_energy_consumption"))
        // Every field the probe needs is one this driver documents.
        let help = try Self.fixture("h200.help-query-gpu.txt")
        for field in NvidiaSMIProbe.queryFields where !NvidiaSMIProbe.optionalFields.contains(field) {
            #expect(help.contains("\"\(field)\""), "\(field) is not in the recorded --help-query-gpu")
        }
    }

    /// The recorded wide query: the readings the heartbeat carries, with the units nounits drops.
    @Test func aRecordedH200TelemetryLineGivesUtilisationMemoryTemperatureAndECC() throws {
        let said = try Self.fixture("h200.fields.txt").split(separator: "\n").last { $0.hasPrefix("h200.telemetry.csv: index") }
        let fields = try #require(said).split(separator: " ").last.map { $0.split(separator: ",").map(String.init) } ?? []
        let gpu = try #require(try NvidiaSMIParser.parseQuery(try Self.fixture("h200.telemetry.csv"), fields: fields).first)
        #expect(gpu.utilizationPercent == 0 && gpu.memoryUsedMiB == 0 && gpu.temperatureCelsius == 44)
        #expect(gpu.eccCorrected == 0 && gpu.eccUncorrected == 0 && gpu.powerWatts == 79.41 && gpu.healthy)
        #expect(gpu.memoryMiB == 143_771 && !gpu.simulated)
        for field in ["utilization.gpu", "memory.used", "temperature.gpu", "ecc.errors.corrected.volatile.total"] {
            #expect(NvidiaSMIProbe.queryFields.contains(field) && NvidiaSMIProbe.optionalFields.contains(field))
            #expect(try Self.fixture("h200.help-query-gpu.txt").contains("\"\(field)\""))
        }
    }

    /// XIDs come from the kernel's log, matched to GPUs by PCI bus id; one an application causes
    /// (13, 31, 43, …) is counted, a hardware one also makes the GPU unhealthy.
    @Test func xidLinesAreCountedPerGPUAndHardwareOnesMakeItUnhealthy() throws {
        #expect(XIDWatch.parse("6,1234,567890,-;NVRM: Xid (PCI:0000:3b:00): 79, pid=0, name=, GPU has fallen off the bus.")! == ("0:3b:00", 79, "GPU has fallen off the bus."))
        #expect(XIDWatch.parse("[ 812.123456] NVRM: Xid (PCI:0000:86:00): 13, pid='<unknown>', name=<unknown>, Graphics Exception: ESR 0x50")?.code == 13)
        #expect(XIDWatch.parse("NVRM: GPU at PCI:0000:3b:00: GPU-0c6e2a44") == nil)
        #expect(XIDWatch.parse("NVRM: Xid (PCI:0000:3b:00): x, pid=1") == nil)
        #expect(XIDWatch.normalizedBus("00000000:3B:00.0") == XIDWatch.normalizedBus("0000:3b:00"))
        var gpus = (0..<3).map { ProbedGPU(index: $0, uuid: "GPU-\($0)", productName: "NVIDIA H100", model: "H100-80GB", memoryMiB: 81_559) }
        gpus[0].pciBusID = "00000000:3B:00.0"
        gpus[1].pciBusID = "00000000:86:00.0"
        let watch = XIDWatch(path: "/nonexistent")
        watch.record(lines: ["[ 812.1] NVRM: Xid (PCI:0000:86:00): 13, pid=4242, name=python, Graphics Exception",
                             "[ 813.0] NVRM: Xid (PCI:0000:86:00): 31, pid=4242, name=python, MMU Fault",
                             "6,1234,900000000,-;NVRM: Xid (PCI:0000:3b:00): 79, pid=0, name=, GPU has fallen off the bus.\n",
                             "[ 901.0] usb 1-1: new device"])
        let read = watch.apply(to: gpus)
        #expect(read[0].xidErrors == 1 && read[0].lastXid == 79 && !read[0].healthy && read[0].healthReason == "Xid 79: GPU has fallen off the bus.")
        #expect(read[1].xidErrors == 2 && read[1].lastXid == 31 && read[1].healthy, "an application's XIDs leave the GPU healthy")
        #expect(read[2].xidErrors == 0 && read[2].healthy)
    }

    @Test func nvlinkIslandsComeFromTheTopologyMatrix() throws {
        #expect(try NvidiaSMIParser.parseTopology(try Self.fixture("hgx-h100x8.topo.txt")) == Dictionary(uniqueKeysWithValues: (0..<8).map { ($0, 0) }),
                "NVSwitch: one island; NIC columns and rows are not GPUs")
        #expect(try NvidiaSMIParser.parseTopology(try Self.fixture("pcie-nvlink-pairs.topo.txt")) == [0: 0, 1: 0, 2: 1, 3: 1])
        #expect(try NvidiaSMIParser.parseTopology(try Self.fixture("pcie-only.topo.txt")) == Dictionary(uniqueKeysWithValues: (0..<8).map { ($0, $0) }),
                "PCIe only: every GPU its own island")
        // A chain (0-1 and 1-2 bonded, 0-2 over PCIe) is one island.
        let chain = "\tGPU0\tGPU1\tGPU2\tCPU Affinity\nGPU0\t X \tNV2\tSYS\t0-7\nGPU1\tNV2\t X \tNV2\t0-7\nGPU2\tSYS\tNV2\t X \t0-7\n"
        #expect(try NvidiaSMIParser.parseTopology(chain) == [0: 0, 1: 0, 2: 0])
        #expect(throws: ProbeError.self) { try NvidiaSMIParser.parseTopology("No devices were found\n") }
        #expect(throws: ProbeError.self) { try NvidiaSMIParser.parseTopology("\tGPU0\tGPU1\tCPU Affinity\nGPU0\t X \n") }
    }

    @Test func migInstancesComeFromTheListing() throws {
        var gpus = try NvidiaSMIParser.parseQuery(try Self.fixture("a100-mig.query.csv"), fields: Self.healthFields)
        let listing = try NvidiaSMIParser.parseList(try Self.fixture("a100-mig.list.txt"))
        for i in gpus.indices { gpus[i].migDevices = listing[gpus[i].index] ?? [] }
        #expect(gpus.map(\.model) == ["A100-40GB", "A100-40GB"])
        #expect(gpus.map(\.migEnabled) == [true, false])
        #expect(gpus[0].powerWatts == nil, "[N/A] is absent, not zero")
        #expect(gpus[0].migDevices == [
            MIGDevice(profile: "1g.5gb", deviceIndex: 0, uuid: "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f"),
            MIGDevice(profile: "1g.5gb", deviceIndex: 1, uuid: "MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb"),
            MIGDevice(profile: "3g.20gb", deviceIndex: 2, uuid: "MIG-1b5f2c62-9b1a-5e06-8e8a-5d0a9e2a2b55"),
        ])
        #expect(gpus[1].migDevices.isEmpty)
    }

    @Test func lostGPUsAndECCErrorsAreUnhealthyWithTheirReason() throws {
        let gpus = try NvidiaSMIParser.parseQuery(try Self.fixture("faulty.query.csv"), fields: Self.healthFields)
        #expect(gpus.count == 3)
        #expect(gpus[0].healthy && gpus[0].healthReason == nil)
        #expect(!gpus[1].healthy && gpus[1].healthReason == "3 uncorrected ECC errors")
        #expect(!gpus[2].healthy && gpus[2].healthReason == "GPU is lost", "the agent still reports it: registered unhealthy, never placed on")
        #expect(gpus[2].index == 2)
    }

    @Test func modelNamesForPartsWithoutASizeInTheirName() throws {
        let gpus = try NvidiaSMIParser.parseQuery(try Self.fixture("mixed-models.query.csv"), fields: Self.healthFields)
        #expect(gpus.map(\.model) == ["H200-141GB", "L40S-48GB", "RTX4090-24GB"])
        #expect(gpus[0].energyMillijoules == nil)
        #expect(gpus.allSatisfy { $0.healthy })
        #expect(NvidiaSMIParser.modelName(product: "NVIDIA A100-SXM4-80GB", memoryMiB: 81920) == "A100-80GB")
        #expect(NvidiaSMIParser.modelName(product: "NVIDIA A100 80GB PCIe", memoryMiB: 81920) == "A100-80GB")
        #expect(NvidiaSMIParser.modelName(product: "Tesla T4", memoryMiB: 15360) == "T4-16GB")
    }

    @Test func malformedOutputIsOneClearError() {
        #expect(throws: ProbeError("nvidia-smi line 1: 3 fields, expected 9: 0, GPU-x, NVIDIA H100") ) {
            try NvidiaSMIParser.parseQuery("0, GPU-x, NVIDIA H100\n", fields: Self.healthFields)
        }
        #expect(throws: ProbeError.self) { try NvidiaSMIParser.parseList("GPU 0: X (UUID: GPU-1)\n  MIG broken\n") }
        #expect(throws: ProbeError("/nonexistent/nvidia-smi not found: no NVIDIA driver here")) {
            try NvidiaSMIProbe(executable: "/nonexistent/nvidia-smi").probe()
        }
    }

    @Test func simulatedGPUs() throws {
        let probe = try SimulatedProbe(specs: ["4xA100-80GB", "4xH100-80GB"], node: "n1")
        let gpus = try probe.probe()
        #expect(gpus.map(\.model) == Array(repeating: "A100-80GB", count: 4) + Array(repeating: "H100-80GB", count: 4))
        #expect(gpus.map(\.index) == Array(0..<8))
        #expect(gpus[0].memoryMiB == 80 * 1024)
        #expect(Set(gpus.map(\.uuid)).count == 8)
        #expect(throws: ProbeError("--simulate-gpus 8H100: expected COUNTxMODEL, such as 8xH100-80GB (1 to 64 GPUs)")) { try SimulatedProbe(specs: ["8H100"]) }
        #expect(throws: ProbeError("--simulate-gpus 2xH100: the model needs its memory size, such as H100-80GB or A100-40GB")) { try SimulatedProbe(specs: ["2xH100"]) }
        #expect(throws: ProbeError.self) { try SimulatedProbe(specs: ["40xH100-80GB", "40xH100-80GB"]) }
    }
}
