import ArgumentParser

/// The one `fastgpu` executable. Command groups land as their parts are built; `--help` lists the
/// planned ones so that users see where the tool is going.
@main
struct FastGPUCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fastgpu",
        abstract: "FastGPU: an open GPU cloud that pools GPU servers and shares them among teams.",
        discussion: """
            Available now:
              up        a local FastGPU (server and agents) in one command
              server    the control plane: HTTP API, SQLite store, scheduler
              agent     the agent of a GPU server (nvidia-smi or --simulate-gpus)
              plan      run the scheduler once on a synthetic cluster, print the plan
              sim       replay GPU-cluster traces (run, compare, pack)
              version   print the version

            Planned command groups (not in this build yet):
              login     save a server URL and token
              run       submit a job and follow it (run --gpus H100:2 -- CMD)
              jobs      ls | show | logs | cancel | why
              queue     every pending job in order, with reason and start
              nodes     ls | show | cordon | drain
              projects  projects, members and roles
              tokens    API tokens
            """,
        version: FastGPUVersion.current,
        subcommands: [UpCommand.self, ServerCommand.self, AgentCommand.self, PlanCommand.self, SimCommand.self, VersionCommand.self]
    )
}

enum FastGPUVersion {
    static let current = "0.1.0"
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the version of fastgpu.")

    func run() {
        print("fastgpu \(FastGPUVersion.current)")
    }
}
