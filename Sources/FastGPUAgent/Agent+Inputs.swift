import FastGPUWire
import Foundation

/// Job inputs: objects downloaded into the job's working directory before its command starts.
///
/// The wrapper does it (as root, before it drops to the job's user), by running this agent's
/// own executable as `fetch-inputs` on a spec file only root reads: like an image pull, it
/// survives the agent dying meanwhile, it is counted in the allocation's time, and a failure
/// fails the job with the reason in its stderr. The spec (it holds the backends' keys) is
/// removed once read.
extension Agent {
    func prepareInputs(_ inputs: [InputDownloadWire], for workload: inout Workload) throws {
        let resolved = inputs.map { input in
            var input = input
            // `local` is the control plane itself, at /s3.
            if input.backend.endpoint.isEmpty { input.backend.endpoint = localStorageURL }
            return input
        }
        let path = workload.directory + "/inputs.json"
        guard FileManager.default.createFile(atPath: path, contents: try JSONEncoder().encode(resolved), attributes: [.posixPermissions: 0o600]) else {
            throw AgentClient.Failure(status: 0, description: "cannot write the job's inputs to \(path)")
        }
        let uid = workload.sandbox?.uid.map { " --uid \($0)" } ?? ""
        let helper = WorkloadSandbox.quoted(execHelper)
        let fetch = #"echo downloading > phase.tmp && mv phase.tmp phase; "#
            + #"if ! \#(helper) fetch-inputs --spec inputs.json --into work\#(uid) >>stderr 2>&1; then rm -f inputs.json; "#
            + #"echo 1 > exit-code.tmp && mv exit-code.tmp exit-code; exit 1; fi; rm -f inputs.json; "#
        workload.prelude = fetch + (workload.prelude ?? WorkloadSandbox.runningStep)
        workload.fetchesInputs = true
    }
}
