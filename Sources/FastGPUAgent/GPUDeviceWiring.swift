import FastGPUWire
import Foundation

/// Which device nodes and which environment an allocation's slots give a workload, following the
/// NVIDIA container toolkit's conventions as its CDI spec writes them: a whole GPU or a share is
/// `/dev/nvidia<minor>`; a MIG instance is its parent GPU's node plus the `nvidia-caps` nodes of
/// its GPU instance and compute instance; every workload with a GPU also gets the driver's control
/// devices (`nvidiactl`, `nvidia-uvm`, `nvidia-uvm-tools`, `nvidia-modeset`) that exist. Device
/// paths keep their host names inside a container, as CDI does; `CUDA_VISIBLE_DEVICES` counts
/// from 0 there, since CUDA numbers only the devices it can open.
///
/// Pure: the GPUs, the device directory's listing and `mig-minors` come in as values, so that it
/// is tested on recorded lists and used unchanged on a real node.
struct GPUDeviceWiring: Equatable, Sendable {
    /// Host paths of the device nodes the workload may open.
    var deviceNodes: [String]
    /// Host paths of the GPU device nodes it must not open (every other GPU of the node).
    var maskedNodes: [String]
    var environment: [String: String]

    /// The node's view of its devices.
    struct Node: Sendable {
        var gpus: [ProbedGPU]
        /// Where the device nodes are (`/dev`; a test's directory of `mknod`-made nodes).
        var deviceRoot: String
        /// The names present under `deviceRoot` (`nvidia0`, `nvidiactl`, `nvidia-caps/nvidia-cap12`).
        var present: Set<String>
        /// `/proc/driver/nvidia-caps/mig-minors`: `gpu0/gi1/access 12` per line.
        var migMinors: [String: Int]
        /// The MPS control daemon's pipe directory when one runs on the node.
        var mpsPipeDirectory: String?
    }

    static let controlDevices = ["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"]

    /// - Parameters:
    ///   - renumbered: the workload sees only its devices (a container), so CUDA counts them from 0;
    ///     a host process that can still list every device keeps the node's indices.
    static func wiring(for slots: [DeviceSlotWire], gpuMemoryLimitMiB: Int?, node: Node, renumbered: Bool) -> GPUDeviceWiring {
        var nodes: [String] = []
        var visible: [String] = []
        var usedMIG: Set<String> = []
        var shareMilli: Int?
        func add(_ name: String) {
            guard node.present.contains(name) else { return }
            let path = node.deviceRoot + "/" + name
            if !nodes.contains(path) { nodes.append(path) }
        }
        for (position, slot) in slots.enumerated() {
            add("nvidia\(slot.gpu)")
            if slot.kind == "mig", let profile = slot.profile {
                let gpu = node.gpus.first { $0.index == slot.gpu }
                let instance = gpu?.migDevices.first { $0.profile == profile && !usedMIG.contains($0.uuid) }
                if let instance {
                    usedMIG.insert(instance.uuid)
                    visible.append(instance.uuid)
                    if let gi = instance.gpuInstance {
                        if let minor = node.migMinors["gpu\(slot.gpu)/gi\(gi)/access"] { add("nvidia-caps/nvidia-cap\(minor)") }
                        if let ci = instance.computeInstance, let minor = node.migMinors["gpu\(slot.gpu)/gi\(gi)/ci\(ci)/access"] {
                            add("nvidia-caps/nvidia-cap\(minor)")
                        }
                    }
                } else {
                    visible.append("MIG-sim-gpu\(slot.gpu)-\(profile)@\(slot.start ?? 0)")
                }
            } else {
                visible.append(renumbered ? String(position) : String(slot.gpu))
                if slot.kind == "share" { shareMilli = slot.milli }
            }
        }
        if !slots.isEmpty { for name in controlDevices { add(name) } }
        let allocated = Set(slots.map(\.gpu))
        var masked = node.gpus.map(\.index).filter { !allocated.contains($0) }.sorted()
            .map { "nvidia\($0)" }.filter { node.present.contains($0) }.map { node.deviceRoot + "/" + $0 }
        // Every MIG capability not its own (another project's instance on a shared GPU; the
        // driver's config and monitor capabilities).
        masked += node.present.filter { $0.hasPrefix("nvidia-caps/") }.sorted()
            .map { node.deviceRoot + "/" + $0 }.filter { !nodes.contains($0) }

        var environment = ["CUDA_VISIBLE_DEVICES": visible.joined(separator: ",")]
        if let limit = gpuMemoryLimitMiB {
            environment["FASTGPU_GPU_MEMORY_LIMIT_MIB"] = String(limit)
            if let pipes = node.mpsPipeDirectory {
                // MPS holds the share to its memory and its part of the SMs; CUDA numbers the
                // device in the client's own view, which a share's single GPU makes 0.
                environment["CUDA_MPS_PIPE_DIRECTORY"] = pipes
                environment["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = "0=\(limit)M"
                if let milli = shareMilli { environment["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = String(max(1, milli / 10)) }
                environment["FASTGPU_GPU_MEMORY_LIMIT_ENFORCED"] = "mps"
            } else {
                environment["FASTGPU_GPU_MEMORY_LIMIT_ENFORCED"] = "none"
            }
        }
        return GPUDeviceWiring(deviceNodes: nodes, maskedNodes: masked, environment: environment)
    }

    /// Reads `/proc/driver/nvidia-caps/mig-minors` (`config 1`, `monitor 2`, `gpu0/gi1/access 12`, ...).
    static func parseMIGMinors(_ text: String) -> [String: Int] {
        var minors: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count == 2, let minor = Int(fields[1]) else { continue }
            minors[String(fields[0])] = minor
        }
        return minors
    }

    /// The names under `root` that matter here: `nvidia*` and `nvidia-caps/*`.
    static func presentDevices(under root: String) -> Set<String> {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        var present = Set(names.filter { $0.hasPrefix("nvidia") && $0 != "nvidia-caps" })
        for cap in (try? FileManager.default.contentsOfDirectory(atPath: root + "/nvidia-caps")) ?? [] { present.insert("nvidia-caps/" + cap) }
        return present
    }

    /// The node's devices as a CDI spec (`cdiVersion` 0.5.0, kind `fastgpu.io/gpu`): one device per
    /// GPU index and per MIG UUID, with the control devices as common edits. Written next to the
    /// agent's state for an operator's runtime (`podman run --device fastgpu.io/gpu=0`) and used
    /// by the agent to wire its own containers.
    static func cdiSpec(node: Node) -> [String: Any] {
        var devices: [[String: Any]] = []
        for gpu in node.gpus.sorted(by: { $0.index < $1.index }) {
            let whole = wiring(for: [DeviceSlotWire(gpu: gpu.index, kind: "whole")], gpuMemoryLimitMiB: nil, node: node, renumbered: true)
            devices.append(["name": String(gpu.index), "containerEdits": ["deviceNodes": whole.deviceNodes.filter { !isControl($0) }.map { ["path": $0] }]])
            for mig in gpu.migDevices {
                let slice = wiring(for: [DeviceSlotWire(gpu: gpu.index, kind: "mig", profile: mig.profile)], gpuMemoryLimitMiB: nil, node: node, renumbered: true)
                devices.append(["name": mig.uuid, "containerEdits": ["deviceNodes": slice.deviceNodes.filter { !isControl($0) }.map { ["path": $0] }]])
            }
        }
        let control = controlDevices.filter { node.present.contains($0) }.map { ["path": node.deviceRoot + "/" + $0] }
        return ["cdiVersion": "0.5.0", "kind": "fastgpu.io/gpu", "devices": devices, "containerEdits": ["deviceNodes": control]]
    }

    private static func isControl(_ path: String) -> Bool {
        controlDevices.contains { path.hasSuffix("/" + $0) }
    }
}
