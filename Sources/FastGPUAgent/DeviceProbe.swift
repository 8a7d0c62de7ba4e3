import Foundation
import Synchronization

/// One GPU as a probe reports it, in the words the control plane registers
/// (`POST /v1/nodes/register` takes `uuid`, `model`, `memoryMiB`, `migEnabled`).
public struct ProbedGPU: Hashable, Sendable {
    public var index: Int
    public var uuid: String
    /// What the driver calls it: `NVIDIA H100 80GB HBM3`.
    public var productName: String
    /// FastGPU's model name, the one jobs ask for: `H100-80GB`.
    public var model: String
    public var memoryMiB: Int
    public var migEnabled: Bool
    public var healthy: Bool
    /// Why it is not healthy, in the driver's words.
    public var healthReason: String?
    public var powerWatts: Double?
    /// Energy since the driver loaded, for metering (nil where the GPU does not count it).
    public var energyMillijoules: Int64?
    /// MIG instances that exist on the GPU now, with the UUIDs `CUDA_VISIBLE_DEVICES` takes.
    public var migDevices: [MIGDevice]
    /// Its NVLink island: GPUs with the same number reach each other over NVLink (from
    /// `nvidia-smi topo -m`); nil where the topology could not be read.
    public var island: Int?
    /// What the GPU does now, as the driver reads it (nil where it cannot): utilisation over the
    /// driver's last sample period, memory used, temperature, and ECC errors since the driver loaded.
    public var utilizationPercent: Int?
    public var memoryUsedMiB: Int?
    public var temperatureCelsius: Int?
    public var eccCorrected: Int64?
    public var eccUncorrected: Int64?
    /// XID errors the kernel logged for this GPU since the agent started, and the last one's code.
    public var xidErrors: Int = 0
    public var lastXid: Int?
    /// `00000000:3B:00.0`: how the kernel's XID lines name the GPU.
    public var pciBusID: String?
    /// Not a real GPU (`--simulate-gpus`): its readings are made up by the agent, and say so.
    public var simulated = false

    public init(index: Int, uuid: String, productName: String, model: String, memoryMiB: Int, migEnabled: Bool = false, healthy: Bool = true,
                healthReason: String? = nil, powerWatts: Double? = nil, energyMillijoules: Int64? = nil, migDevices: [MIGDevice] = [],
                island: Int? = nil) {
        self.island = island
        self.index = index
        self.uuid = uuid
        self.productName = productName
        self.model = model
        self.memoryMiB = memoryMiB
        self.migEnabled = migEnabled
        self.healthy = healthy
        self.healthReason = healthReason
        self.powerWatts = powerWatts
        self.energyMillijoules = energyMillijoules
        self.migDevices = migDevices
    }
}

public struct MIGDevice: Hashable, Sendable {
    public var profile: String
    public var deviceIndex: Int
    public var uuid: String
    /// Its GPU instance and compute instance ids, which name its `nvidia-caps` device nodes
    /// (`mig-minors`: `gpu0/gi1/access`, `gpu0/gi1/ci0/access`); nil where not read.
    public var gpuInstance: Int?
    public var computeInstance: Int?

    public init(profile: String, deviceIndex: Int, uuid: String, gpuInstance: Int? = nil, computeInstance: Int? = nil) {
        self.profile = profile
        self.deviceIndex = deviceIndex
        self.uuid = uuid
        self.gpuInstance = gpuInstance
        self.computeInstance = computeInstance
    }
}

/// What a probe could not do, in one line for the agent's log and the CLI.
public struct ProbeError: Error, CustomStringConvertible, Hashable, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Where an agent learns its node's GPUs.
public protocol DeviceProbe: Sendable {
    func probe() throws -> [ProbedGPU]
}

/// GPUs that are not there, for machines without any: `--simulate-gpus 8xH100-80GB`
/// (repeatable: `--simulate-gpus 4xA100-80GB --simulate-gpus 4xH100-80GB`).
public struct SimulatedProbe: DeviceProbe {
    public let gpus: [ProbedGPU]

    /// Parses `COUNTxMODEL` specs; the model's memory comes from its name (`…-80GB`).
    public init(specs: [String], node: String = "sim") throws {
        var gpus: [ProbedGPU] = []
        for spec in specs {
            let parts = spec.split(separator: "x", maxSplits: 1)
            guard parts.count == 2, let count = Int(parts[0]), (1...64).contains(count), !parts[1].isEmpty else {
                throw ProbeError("--simulate-gpus \(spec): expected COUNTxMODEL, such as 8xH100-80GB (1 to 64 GPUs)")
            }
            let model = String(parts[1])
            guard let gib = Self.memoryGiB(of: model) else {
                throw ProbeError("--simulate-gpus \(spec): the model needs its memory size, such as H100-80GB or A100-40GB")
            }
            for _ in 0..<count {
                let index = gpus.count
                var gpu = ProbedGPU(index: index, uuid: "GPU-sim-\(node)-\(index)", productName: "Simulated \(model)", model: model,
                                    memoryMiB: gib * 1024)
                gpu.simulated = true
                gpus.append(gpu)
            }
        }
        guard gpus.count <= 64 else { throw ProbeError("--simulate-gpus: at most 64 GPUs on one node") }
        self.gpus = gpus
    }

    public func probe() throws -> [ProbedGPU] { gpus }

    static func memoryGiB(of model: String) -> Int? {
        guard let last = model.split(separator: "-").last, last.uppercased().hasSuffix("GB"), let gib = Int(last.dropLast(2)), gib > 0 else { return nil }
        return gib
    }
}

/// The real GPUs, from `nvidia-smi`: one `--query-gpu` call for the devices and one `-L` call for
/// their MIG instances. The parsers are separate so that they are tested on recorded output.
public struct NvidiaSMIProbe: DeviceProbe {
    public static let queryFields = ["index", "uuid", "name", "memory.total", "mig.mode.current", "power.draw",
                                     "total_energy_consumption", "ecc.errors.uncorrected.volatile.total", "pci.bus_id",
                                     "utilization.gpu", "memory.used", "temperature.gpu", "ecc.errors.corrected.volatile.total"]
    /// Fields a driver may not know (the 580 driver of an H200 knows no `total_energy_consumption`):
    /// without them the probe still reads the GPUs, and that reading is absent.
    public static let optionalFields: Set<String> = ["power.draw", "total_energy_consumption", "ecc.errors.uncorrected.volatile.total", "pci.bus_id",
                                                     "utilization.gpu", "memory.used", "temperature.gpu", "ecc.errors.corrected.volatile.total"]
    public let executable: String
    /// XID errors from the kernel's log, matched to GPUs by PCI bus id.
    let xids: XIDWatch
    /// The fields this driver answered, once learnt (each probe would otherwise fail first).
    private static let answeredFields = Mutex<[String: [String]]>([:])

    public init(executable: String = "/usr/bin/nvidia-smi", kernelLog: String = "/dev/kmsg") {
        self.executable = executable
        xids = XIDWatch(path: kernelLog)
    }

    public func probe() throws -> [ProbedGPU] {
        var fields = Self.answeredFields.withLock { $0[executable] } ?? Self.queryFields
        var query: String?
        while query == nil {
            do {
                query = try run(["--query-gpu=\(fields.joined(separator: ","))", "--format=csv,noheader,nounits"])
            } catch let error as ProbeError {
                // `Field "X" is not a valid field to query.`: ask again without it, if it is one we can do without.
                guard let unknown = NvidiaSMIParser.unknownField(in: error.description), Self.optionalFields.contains(unknown),
                      fields.contains(unknown) else { throw error }
                fields.removeAll { $0 == unknown }
            }
        }
        Self.answeredFields.withLock { [fields] in $0[executable] = fields }
        var gpus = try NvidiaSMIParser.parseQuery(query ?? "", fields: fields)
        if gpus.contains(where: \.migEnabled) {
            let listing = try NvidiaSMIParser.parseList(try run(["-L"]))
            for i in gpus.indices { gpus[i].migDevices = listing[gpus[i].index] ?? [] }
        }
        // Islands matter only to place multi-GPU tasks well: a topology that cannot be read
        // leaves them unknown rather than failing the probe.
        if let topology = try? run(["topo", "-m"]), let islands = try? NvidiaSMIParser.parseTopology(topology) {
            for i in gpus.indices { gpus[i].island = islands[gpus[i].index] }
        }
        return xids.apply(to: gpus)
    }

    private func run(_ arguments: [String]) throws -> String {
        guard FileManager.default.isExecutableFile(atPath: executable) else { throw ProbeError("\(executable) not found: no NVIDIA driver here") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        do { try process.run() } catch { throw ProbeError("cannot run \(executable): \(error.localizedDescription)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let message = String(decoding: errors.isEmpty ? data : errors, as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
            throw ProbeError("nvidia-smi failed (exit \(process.terminationStatus)): \(message)")
        }
        return String(decoding: data, as: UTF8.self)
    }
}

public enum NvidiaSMIParser {
    /// Parses `nvidia-smi --query-gpu=<NvidiaSMIProbe.queryFields> --format=csv,noheader,nounits`.
    /// `[N/A]` and `[Not Supported]` are absent values; `[GPU is lost]`, `[Unknown Error]` and
    /// uncorrected ECC errors make the GPU unhealthy, with that as the reason.
    /// `columns`: the fields queried, in order (a driver that does not know an optional one is
    /// asked without it).
    public static func parseQuery(_ output: String, fields columns: [String] = NvidiaSMIProbe.queryFields) throws -> [ProbedGPU] {
        var gpus: [ProbedGPU] = []
        for (number, rawLine) in output.split(whereSeparator: \.isNewline).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.count == columns.count else {
                throw ProbeError("nvidia-smi line \(number + 1): \(fields.count) fields, expected \(columns.count): \(line)")
            }
            func value(_ field: String) -> String? {
                guard let column = columns.firstIndex(of: field) else { return nil }
                let text = fields[column]
                return text.hasPrefix("[") || text.isEmpty ? nil : text
            }
            guard let index = value("index").flatMap(Int.init) else { throw ProbeError("nvidia-smi line \(number + 1): no GPU index: \(line)") }
            let name = value("name") ?? "unknown"
            var healthy = true
            var reason: String?
            if let broken = fields.first(where: { $0 == "[GPU is lost]" || $0 == "[Unknown Error]" || $0 == "[GPU requires reset]" }) {
                healthy = false
                reason = broken.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            } else if let ecc = value("ecc.errors.uncorrected.volatile.total").flatMap(Int.init), ecc > 0 {
                healthy = false
                reason = "\(ecc) uncorrected ECC errors"
            }
            let memory = value("memory.total").flatMap(Int.init) ?? 0
            if healthy && memory <= 0 { healthy = false; reason = "memory size unreadable" }
            var gpu = ProbedGPU(
                index: index, uuid: value("uuid") ?? "GPU-unknown-\(index)", productName: name, model: modelName(product: name, memoryMiB: memory),
                memoryMiB: memory, migEnabled: value("mig.mode.current") == "Enabled", healthy: healthy, healthReason: reason,
                powerWatts: value("power.draw").flatMap(Double.init), energyMillijoules: value("total_energy_consumption").flatMap(Int64.init))
            gpu.utilizationPercent = value("utilization.gpu").flatMap(Int.init)
            gpu.memoryUsedMiB = value("memory.used").flatMap(Int.init)
            gpu.temperatureCelsius = value("temperature.gpu").flatMap(Int.init)
            gpu.eccCorrected = value("ecc.errors.corrected.volatile.total").flatMap(Int64.init)
            gpu.eccUncorrected = value("ecc.errors.uncorrected.volatile.total").flatMap(Int64.init)
            gpu.pciBusID = value("pci.bus_id")
            gpus.append(gpu)
        }
        return gpus
    }

    /// Parses `nvidia-smi topo -m` into an NVLink island per GPU index: GPUs joined by NVLink
    /// (`NV#`, directly or through others, as on an NVSwitch board) share an island; a GPU
    /// reached only over PCIe or the SMP link (`PIX`, `PXB`, `PHB`, `NODE`, `SYS`) is an island
    /// of its own. Islands are numbered 0, 1, ... in the order of their lowest GPU index.
    /// The field named by nvidia-smi's `Field "X" is not a valid field to query.`, if that is the message.
    public static func unknownField(in message: String) -> String? {
        guard let start = message.range(of: "Field \""), let end = message[start.upperBound...].range(of: "\" is not a valid field") else { return nil }
        return String(message[start.upperBound..<end.lowerBound])
    }

    /// Removes terminal escapes (`ESC [ ... letter`): recent drivers underline the header of `topo -m`.
    static func withoutEscapes(_ text: String) -> String {
        var out = ""
        var scalars = text.unicodeScalars.makeIterator()
        while let scalar = scalars.next() {
            guard scalar == "\u{1B}" else { out.unicodeScalars.append(scalar); continue }
            guard scalars.next() == "[" else { continue }
            while let next = scalars.next(), !(("A"..."Z").contains(next) || ("a"..."z").contains(next)) {}
        }
        return out
    }

    public static func parseTopology(_ output: String) throws -> [Int: Int] {
        let lines = withoutEscapes(output).split(whereSeparator: \.isNewline).map(String.init)
        guard let headerAt = lines.firstIndex(where: { $0.split(whereSeparator: \.isWhitespace).first.map { $0.hasPrefix("GPU") } == true && $0.first?.isWhitespace == true }) else {
            throw ProbeError("nvidia-smi topo -m: no GPU header line")
        }
        // Device columns are the header's words before `CPU Affinity`; the rows carry one value per column first.
        let columns = Array(lines[headerAt].split(whereSeparator: \.isWhitespace).prefix { $0 != "CPU" && $0 != "NUMA" }).map(String.init)
        func gpuIndex(_ word: Substring) -> Int? { word.hasPrefix("GPU") ? Int(word.dropFirst(3)) : nil }
        var parent: [Int: Int] = [:]
        func root(_ i: Int) -> Int {
            var i = i
            while let p = parent[i], p != i { i = p }
            return i
        }
        for line in lines[(headerAt + 1)...] {
            if line.hasPrefix("Legend") { break }
            let words = line.split(whereSeparator: \.isWhitespace)
            guard let name = words.first, let row = gpuIndex(name) else { continue }
            guard words.count > columns.count else { throw ProbeError("nvidia-smi topo -m: short row: \(line)") }
            if parent[row] == nil { parent[row] = row }
            for (column, header) in columns.enumerated() {
                guard let other = gpuIndex(Substring(header)), words[column + 1].hasPrefix("NV") else { continue }
                if parent[other] == nil { parent[other] = other }
                let (a, b) = (root(row), root(other))
                if a != b { parent[max(a, b)] = min(a, b) }
            }
        }
        guard !parent.isEmpty else { throw ProbeError("nvidia-smi topo -m: no GPU rows") }
        var number: [Int: Int] = [:]
        var islands: [Int: Int] = [:]
        for gpu in parent.keys.sorted() {
            let r = root(gpu)
            if number[r] == nil { number[r] = number.count }
            islands[gpu] = number[r]
        }
        return islands
    }

    /// Parses `nvidia-smi -L`: MIG instances per GPU index.
    public static func parseList(_ output: String) throws -> [Int: [MIGDevice]] {
        var result: [Int: [MIGDevice]] = [:]
        var current: Int?
        for rawLine in output.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("GPU "), let colon = line.firstIndex(of: ":"), let index = Int(line[line.index(line.startIndex, offsetBy: 4)..<colon]) {
                current = index
                result[index] = result[index] ?? []
            } else if line.hasPrefix("MIG "), let gpu = current {
                // "MIG 1g.10gb     Device  0: (UUID: MIG-…)"
                let words = line.split(separator: " ", omittingEmptySubsequences: true)
                guard words.count >= 5, let deviceWord = words.firstIndex(of: "Device"), deviceWord + 1 < words.count,
                      let device = Int(words[deviceWord + 1].trimmingCharacters(in: CharacterSet(charactersIn: ":"))),
                      let uuidStart = line.range(of: "UUID: ") else {
                    throw ProbeError("nvidia-smi -L: cannot read \(line)")
                }
                let uuid = line[uuidStart.upperBound...].trimmingCharacters(in: CharacterSet(charactersIn: ") "))
                result[gpu, default: []].append(MIGDevice(profile: String(words[1]), deviceIndex: device, uuid: uuid))
            }
        }
        return result
    }

    /// FastGPU's model name for a product: `NVIDIA H100 80GB HBM3` → `H100-80GB`,
    /// `NVIDIA A100-SXM4-40GB` → `A100-40GB`, `NVIDIA L40S` (46068 MiB) → `L40S-48GB`.
    public static func modelName(product: String, memoryMiB: Int) -> String {
        var words = product.replacingOccurrences(of: "-", with: " ").split(separator: " ").map(String.init)
        words.removeAll { ["NVIDIA", "GEFORCE", "TESLA", "QUADRO"].contains($0.uppercased()) }
        guard var family = words.first else { return "unknown" }
        if family.uppercased() == "RTX", words.count > 1, !words[1].uppercased().hasSuffix("GB") { family += words[1] }
        if let size = words.first(where: { $0.uppercased().hasSuffix("GB") && Int($0.dropLast(2)) != nil }) {
            return "\(family)-\(size.uppercased())"
        }
        // Marketed sizes are powers of two or known steps; the driver reports a little less.
        let gib = Double(memoryMiB) / 1024
        let marketed = [8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 94, 96, 120, 141, 144, 180, 192, 288].first { Double($0) >= gib * 0.97 } ?? Int(gib.rounded())
        return "\(family)-\(marketed)GB"
    }
}
