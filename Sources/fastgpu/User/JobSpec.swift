import FastGPUWire
import Foundation
import Yams

/// What `fastgpu run` submits, from its flags and from a task file; the two mean the same and the
/// flags win where both say something. Every value is checked here first, so that a typo gets a
/// message about the flag or the key the person wrote.
struct JobSpec: Equatable {
    var name: String?
    var project: String?
    var gpus: String?
    var gpuMemory: String?
    var mig: String?
    var nodes: Int?
    var cpus: String?
    var memory: String?
    var priority: String?
    var spot: Bool?
    var maxRuntime: String?
    var retry: Int?
    var env: [String: String] = [:]
    /// Secret env values: encrypted on the server, never shown, given only to the agent.
    var secrets: [String: String] = [:]
    /// Env names taken from the project's secret store: ENV → secret name.
    var secretRefs: [String: String] = [:]
    /// An OCI image the command runs in; nil: a host process.
    var image: String?
    var network: String?
    /// Directories uploaded after the process exits: path, s3://BACKEND/PREFIX/, when.
    var outputs: [OutputBody] = []
    /// Objects downloaded before the command starts: s3://BACKEND/KEY (or PREFIX/) → path.
    var inputs: [InputBody] = []
    var command: [String] = []

    /// Fields of `other` that are set replace those of `self`; environments are merged.
    func overridden(by other: JobSpec) -> JobSpec {
        var spec = self
        spec.name = other.name ?? name
        spec.project = other.project ?? project
        spec.gpus = other.gpus ?? gpus
        spec.gpuMemory = other.gpuMemory ?? gpuMemory
        spec.mig = other.mig ?? mig
        spec.nodes = other.nodes ?? nodes
        spec.cpus = other.cpus ?? cpus
        spec.memory = other.memory ?? memory
        spec.priority = other.priority ?? priority
        spec.spot = other.spot ?? spot
        spec.maxRuntime = other.maxRuntime ?? maxRuntime
        spec.retry = other.retry ?? retry
        spec.image = other.image ?? image
        spec.network = other.network ?? network
        spec.env.merge(other.env) { _, new in new }
        spec.secrets.merge(other.secrets) { _, new in new }
        spec.secretRefs.merge(other.secretRefs) { _, new in new }
        if !other.outputs.isEmpty { spec.outputs = other.outputs }
        if !other.inputs.isEmpty { spec.inputs = other.inputs }
        if !other.command.isEmpty { spec.command = other.command }
        return spec
    }

    func body(defaultProject: String) throws -> JobSubmissionBody {
        guard !command.isEmpty else { throw CommandFailure("no command to run: put it after `--` (fastgpu run --gpus 1 -- python train.py) or under `run:` in the task file") }
        var resources = ResourcesBody()
        if let gpus {
            let (model, count, floor) = try Self.parseGPUs(gpus)
            resources.gpuModel = model
            resources.gpus = count
            resources.minGpuMemoryMiB = floor
        }
        if let gpuMemory {
            if let count = resources.gpus, count > 1 {
                // Several whole GPUs, each with at least this much memory (as `24GB:2`).
                guard resources.minGpuMemoryMiB == nil else { throw CommandFailure("--gpus \(gpus ?? "") already says the memory per GPU; drop --gpu-memory") }
                resources.minGpuMemoryMiB = try Self.parseMiB(gpuMemory, flag: "--gpu-memory")
            } else {
                guard resources.minGpuMemoryMiB == nil else { throw CommandFailure("--gpu-memory asks for a share of one GPU; --gpus \(gpus ?? "") asks for whole ones") }
                resources.gpus = nil
                resources.gpuMemoryMiB = try Self.parseMiB(gpuMemory, flag: "--gpu-memory")
            }
        }
        if let mig {
            guard resources.gpus == nil || resources.gpus == 1, gpuMemory == nil else { throw CommandFailure("--mig asks for one MIG slice; it cannot go with --gpus N or --gpu-memory") }
            resources.gpus = nil
            guard mig.range(of: #"^[1-8]g\.[0-9]+gb(\+me)?$"#, options: .regularExpression) != nil else {
                throw CommandFailure("--mig must be a MIG profile such as 1g.10gb or 3g.40gb, not '\(mig)'")
            }
            resources.mig = mig
        }
        if let cpus {
            guard let value = Double(cpus), value >= 0, value <= 100_000 else { throw CommandFailure("--cpus must be a number of cores such as 4 or 0.5, not '\(cpus)'") }
            resources.cpuMillis = Int((value * 1000).rounded())
        }
        if let memory { resources.memoryMiB = try Self.parseMiB(memory, flag: "--memory") }
        if let nodes { guard (1...4096).contains(nodes) else { throw CommandFailure("--nodes must be 1 to 4096, not \(nodes)") } }
        if let priority { guard ["low", "normal", "high"].contains(priority) else { throw CommandFailure("--priority must be low, normal or high, not '\(priority)'") } }
        if let image {
            guard !image.isEmpty, image.utf8.count <= 255, !image.contains(where: { $0.isWhitespace }) else {
                throw CommandFailure("--image must be an image reference such as pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime, not '\(image.prefix(64))'")
            }
        }
        if let network {
            guard ["none", "isolated", "host"].contains(network) else { throw CommandFailure("--network must be none, isolated or host, not '\(network.prefix(32))'") }
            guard network != "isolated" || image != nil else { throw CommandFailure("--network isolated needs --image: a host process runs with none or host") }
        }
        for output in outputs {
            guard !output.path.isEmpty, output.to.hasPrefix("s3://"), output.to.dropFirst(5).contains("/") else {
                throw CommandFailure("an output is PATH=s3://BACKEND/PREFIX/ (fastgpu storage ls names the backends), not '\(output.path)=\(output.to)'")
            }
            if let when = output.when, !["always", "success", "failure"].contains(when) {
                throw CommandFailure("an output's when must be always, success or failure, not '\(when)'")
            }
        }
        for input in inputs {
            guard !input.path.isEmpty, input.from.hasPrefix("s3://"), input.from.dropFirst(5).contains("/") else {
                throw CommandFailure("an input is PATH=s3://BACKEND/KEY (or s3://BACKEND/PREFIX/ for all under it), not '\(input.path)=\(input.from)'")
            }
        }
        if let retry { guard (0...99).contains(retry) else { throw CommandFailure("--retry must be 0 to 99 (retries after the first attempt), not \(retry)") } }
        for (flag, keys) in [("--env", env.keys), ("--secret", secrets.keys), ("--secret-ref", secretRefs.keys)] {
            for key in keys {
                guard key.range(of: #"^[A-Za-z_][A-Za-z0-9_]*$"#, options: .regularExpression) != nil else { throw CommandFailure("\(flag) name '\(key)' is not a valid variable name") }
            }
        }
        return JobSubmissionBody(
            project: project ?? defaultProject, name: name, command: command, env: env.isEmpty ? nil : env,
            resources: resources == ResourcesBody() ? nil : resources,
            tasks: nodes, gang: (nodes ?? 1) > 1 ? true : nil, priority: priority, spot: spot,
            maxRuntimeSeconds: try maxRuntime.map { try Self.parseSeconds($0, flag: "--max-runtime") },
            maxAttempts: retry.map { $0 + 1 }, secrets: secrets.isEmpty ? nil : secrets, secretRefs: secretRefs.isEmpty ? nil : secretRefs,
            image: image, network: network, outputs: outputs.isEmpty ? nil : outputs, inputs: inputs.isEmpty ? nil : inputs)
    }

    // MARK: Values

    /// `H100:2`, `2`, `H100` (one), `A100-80GB:8`, and dstack's per-GPU memory floor: `24GB:2`
    /// (two GPUs with at least 24 GB each, of any model), `H100:80GB:8`. The floor is in GB as GPU
    /// vendors label them (10⁹ bytes): an "80GB" H100 reports 81,559 MiB, a "24GB" L4 23,034 MiB.
    static func parseGPUs(_ text: String) throws -> (model: String?, count: Int, minMemoryMiB: Int?) {
        var parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let bad = CommandFailure("--gpus must look like H100:2, 2, H100, 24GB:2 or H100:80GB:2, not '\(text)'")
        guard (1...3).contains(parts.count) else { throw bad }
        var count = 1
        if let last = parts.last, let number = Int(last) {
            guard (parts.count == 1 ? 0 : 1)...1024 ~= number else { throw bad }
            count = number
            parts.removeLast()
        }
        var floor: Int?
        if let memory = parts.last, let gigabytes = vendorGigabytes(memory) {
            guard (1...4096).contains(gigabytes), count > 0 else { throw bad }
            floor = gigabytes * 1_000_000_000 / 1_048_576
            parts.removeLast()
        }
        guard parts.count <= 1 else { throw bad }
        if let model = parts.first {
            guard isModel(model) else { throw bad }
            return (model, count, floor)
        }
        guard text.contains(where: \.isLetter) || count >= 0, !text.isEmpty else { throw bad }
        return (nil, count, floor)
    }

    /// `24GB`, `80gb`, `24G`: a whole number of vendor gigabytes; nil for anything else.
    private static func vendorGigabytes(_ text: String) -> Int? {
        guard let match = text.range(of: #"^[0-9]{1,4}[Gg][Bb]?$"#, options: .regularExpression), match == text.startIndex..<text.endIndex else { return nil }
        return Int(text.prefix { $0.isNumber })
    }

    private static func isModel(_ text: String) -> Bool {
        text.range(of: #"^[A-Za-z][A-Za-z0-9_.-]*$"#, options: .regularExpression) != nil
    }

    /// `20GB`, `20G`, `20GiB`, `512MB`, `512Mi`, `1TB`: GB and GiB both mean 1024 MiB, as GPU
    /// memory is counted. A bare number is MiB.
    static func parseMiB(_ text: String, flag: String) throws -> Int {
        let pattern = #"^([0-9]+(\.[0-9]+)?)\s*([KkMmGgTt]?)(i?[Bb]?)$"#
        guard let match = text.range(of: pattern, options: .regularExpression), match == text.startIndex..<text.endIndex else {
            throw CommandFailure("\(flag) must be a size such as 20GB or 512MB, not '\(text)'")
        }
        let number = text.prefix { $0.isNumber || $0 == "." }
        let unit = text.dropFirst(number.count).trimmingCharacters(in: .whitespaces).first.map { Character($0.uppercased()) }
        guard let value = Double(number) else { throw CommandFailure("\(flag) must be a size such as 20GB, not '\(text)'") }
        let scale: Double = switch unit {
        case "K": 1.0 / 1024
        case "G": 1024
        case "T": 1024 * 1024
        default: 1
        }
        let mib = value * scale
        guard mib >= 1, mib <= Double(1 << 30) else { throw CommandFailure("\(flag) \(text) is out of range") }
        return Int(mib.rounded())
    }

    /// `90s`, `30m`, `2h`, `1d`, `1h30m`; a bare number is seconds.
    static func parseSeconds(_ text: String, flag: String) throws -> Int64 {
        if let plain = Int64(text) {
            guard plain > 0 else { throw CommandFailure("\(flag) must be positive") }
            return plain
        }
        var total: Int64 = 0
        var digits = ""
        for character in text {
            if character.isNumber { digits.append(character); continue }
            let scale: Int64
            switch character {
            case "s": scale = 1
            case "m": scale = 60
            case "h": scale = 3600
            case "d": scale = 86400
            default: throw CommandFailure("\(flag) must be a duration such as 90s, 30m, 2h or 1h30m, not '\(text)'")
            }
            guard let value = Int64(digits) else { throw CommandFailure("\(flag) must be a duration such as 90s, 30m, 2h or 1h30m, not '\(text)'") }
            total += value * scale
            digits = ""
        }
        guard digits.isEmpty, total > 0, total <= 315_360_000 else { throw CommandFailure("\(flag) must be a duration such as 90s, 30m, 2h or 1h30m, not '\(text)'") }
        return total
    }

    /// `K=V`, or `K` alone to pass this shell's value of K.
    static func parseEnv(_ items: [String], flag: String = "--env") throws -> [String: String] {
        var env: [String: String] = [:]
        for item in items {
            if let equals = item.firstIndex(of: "=") {
                env[String(item[..<equals])] = String(item[item.index(after: equals)...])
            } else if let value = ProcessInfo.processInfo.environment[item] {
                env[item] = value
            } else {
                throw CommandFailure("\(flag) \(item): give K=V, or the name of a variable set in this shell")
            }
        }
        return env
    }
}

// MARK: - Task files

/// A task file, the YAML form of `fastgpu run`'s flags (see docs/task-file.md):
///
///     name: train-llama
///     project: vision
///     nodes: 2
///     resources:
///       gpus: H100:8          # or 8, or H100 (one)
///       cpus: 32
///       memory: 256GB
///     env:
///       WANDB_MODE: offline
///     run: torchrun --nnodes 2 train.py
///     retry: 2
///     priority: high
///     spot: false
///     max_runtime: 12h
enum TaskFile {
    static let keys: Set<String> = ["name", "project", "nodes", "resources", "env", "secrets", "secret_refs", "run", "retry", "priority", "spot", "max_runtime", "image", "network", "outputs", "inputs"]
    static let resourceKeys: Set<String> = ["gpus", "gpu_memory", "mig", "cpus", "memory"]

    static func load(path: String) throws -> JobSpec {
        guard let data = FileManager.default.contents(atPath: path) else { throw CommandFailure("cannot read the task file \(path)") }
        return try parse(String(decoding: data, as: UTF8.self), path: path)
    }

    static func parse(_ text: String, path: String) throws -> JobSpec {
        let document: Any?
        do {
            document = try Yams.load(yaml: text)
        } catch let error as YamlError {
            throw CommandFailure("\(path) is not valid YAML: \(oneLine(error))")
        }
        guard let top = document as? [String: Any] else { throw CommandFailure("\(path): a task file is a mapping of keys such as run, resources and env") }
        if let unknown = top.keys.sorted().first(where: { !keys.contains($0) }) {
            throw CommandFailure("\(path): unknown key '\(unknown)' (known: \(keys.sorted().joined(separator: ", ")))")
        }
        var spec = JobSpec()
        spec.name = try string(top["name"], "name", path)
        spec.project = try string(top["project"], "project", path)
        spec.nodes = try int(top["nodes"], "nodes", path)
        spec.retry = try int(top["retry"], "retry", path)
        spec.priority = try string(top["priority"], "priority", path)
        spec.maxRuntime = try string(top["max_runtime"], "max_runtime", path)
        spec.image = try string(top["image"], "image", path)
        spec.network = try string(top["network"], "network", path)
        if let spot = top["spot"] {
            guard let value = spot as? Bool else { throw CommandFailure("\(path): spot must be true or false") }
            spec.spot = value
        }
        if let resources = top["resources"] {
            guard let map = resources as? [String: Any] else { throw CommandFailure("\(path): resources must be a mapping (gpus, gpu_memory, mig, cpus, memory)") }
            if let unknown = map.keys.sorted().first(where: { !resourceKeys.contains($0) }) {
                throw CommandFailure("\(path): unknown key 'resources.\(unknown)' (known: \(resourceKeys.sorted().joined(separator: ", ")))")
            }
            spec.gpus = try string(map["gpus"], "resources.gpus", path)
            spec.gpuMemory = try string(map["gpu_memory"], "resources.gpu_memory", path)
            spec.mig = try string(map["mig"], "resources.mig", path)
            spec.cpus = try string(map["cpus"], "resources.cpus", path)
            spec.memory = try string(map["memory"], "resources.memory", path)
        }
        switch top["env"] {
        case nil: break
        case let map as [String: Any]:
            for (key, value) in map { spec.env[key] = try string(value, "env.\(key)", path) }
        case let list as [Any]:
            spec.env = try JobSpec.parseEnv(list.map { "\($0)" })
        default:
            throw CommandFailure("\(path): env must be a mapping (KEY: value) or a list of KEY=value")
        }
        // `secrets:` takes values (KEY: value) or names of this shell's variables (a list), so a
        // task file need not hold the value itself; `secret_refs:` names the project's secrets.
        switch top["secrets"] {
        case nil: break
        case let map as [String: Any]:
            for (key, value) in map { spec.secrets[key] = try string(value, "secrets.\(key)", path) }
        case let list as [Any]:
            spec.secrets = try JobSpec.parseEnv(list.map { "\($0)" }, flag: "secrets")
        default:
            throw CommandFailure("\(path): secrets must be a mapping (KEY: value) or a list of KEY or KEY=value")
        }
        if let refs = top["secret_refs"] {
            guard let map = refs as? [String: Any] else { throw CommandFailure("\(path): secret_refs must be a mapping (ENV_NAME: secret-name)") }
            for (key, value) in map { spec.secretRefs[key] = try string(value, "secret_refs.\(key)", path) }
        }
        if let outputs = top["outputs"] {
            guard let list = outputs as? [Any] else { throw CommandFailure("\(path): outputs must be a list of {path, to, when}") }
            for (index, item) in list.enumerated() {
                guard let map = item as? [String: Any], let outputPath = try string(map["path"], "outputs[\(index)].path", path),
                      let to = try string(map["to"], "outputs[\(index)].to", path) else {
                    throw CommandFailure("\(path): outputs[\(index)] needs path and to (s3://BACKEND/PREFIX/)")
                }
                if let unknown = map.keys.sorted().first(where: { !["path", "to", "when"].contains($0) }) {
                    throw CommandFailure("\(path): unknown key 'outputs[\(index)].\(unknown)' (known: path, to, when)")
                }
                spec.outputs.append(OutputBody(path: outputPath, to: to, when: try string(map["when"], "outputs[\(index)].when", path)))
            }
        }
        if let inputs = top["inputs"] {
            guard let list = inputs as? [Any] else { throw CommandFailure("\(path): inputs must be a list of {from, path}") }
            for (index, item) in list.enumerated() {
                guard let map = item as? [String: Any], let from = try string(map["from"], "inputs[\(index)].from", path),
                      let inputPath = try string(map["path"], "inputs[\(index)].path", path) else {
                    throw CommandFailure("\(path): inputs[\(index)] needs from (s3://BACKEND/KEY) and path")
                }
                if let unknown = map.keys.sorted().first(where: { !["from", "path"].contains($0) }) {
                    throw CommandFailure("\(path): unknown key 'inputs[\(index)].\(unknown)' (known: from, path)")
                }
                spec.inputs.append(InputBody(from: from, path: inputPath))
            }
        }
        switch top["run"] {
        case nil: break
        case let script as String: spec.command = ["sh", "-c", script]
        case let argv as [Any]: spec.command = argv.map { "\($0)" }
        default: throw CommandFailure("\(path): run must be a shell command (a string) or a list of arguments")
        }
        return spec
    }

    /// Scalars as text: YAML reads `gpus: 2` as a number and `cpus: 0.5` as a double.
    private static func string(_ value: Any?, _ key: String, _ path: String) throws -> String? {
        switch value {
        case nil: return nil
        case let text as String: return text
        case let number as Int: return String(number)
        case let number as Double: return String(number)
        default: throw CommandFailure("\(path): \(key) must be a single value")
        }
    }

    private static func int(_ value: Any?, _ key: String, _ path: String) throws -> Int? {
        switch value {
        case nil: return nil
        case let number as Int: return number
        default: throw CommandFailure("\(path): \(key) must be a whole number")
        }
    }

    private static func oneLine(_ error: any Error) -> String {
        String(describing: error).split(whereSeparator: \.isNewline).first.map(String.init) ?? "\(error)"
    }
}
