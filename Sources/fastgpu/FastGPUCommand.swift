import ArgumentParser

/// The one `fastgpu` executable: for the people who use GPUs, the operators who run the pool, and
/// those who study its scheduling.
@main
struct FastGPUCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fastgpu",
        abstract: "FastGPU: an open GPU cloud that pools GPU servers and shares them among teams.",
        discussion: """
            Use GPUs:
              run       submit a job and follow it (run --gpus H100:2 -- python train.py)
              jobs      ls | show | logs [-f] | cancel | why
              queue     every pending job in order, with reason and estimated start
              login     save a server URL and token
              ui        a link that signs you in to the web dashboard
              usage     GPU-hours and cost by SKU, job or member
              invoices  ls | show MONTH
              budget    show | set | clear
              prices    ls | set
              credits   ls | grant | package
              quota     show | set | clear: guaranteed GPUs and borrowing

            Run the pool:
              up        a local FastGPU (server and agents) in one command
              server    the control plane: HTTP API, SQLite store, scheduler
              agent     the agent of a GPU server (nvidia-smi or --simulate-gpus)
              nodes     ls | show | cordon | uncordon | drain
              projects  ls | show | create | add-member | remove-member
              tokens    ls | create | revoke
              admin     backup | restore: the server's database

            Study scheduling:
              sim       replay GPU-cluster traces (run, compare, pack)
              plan      run the scheduler once on a synthetic cluster, print the plan
            """,
        version: FastGPUVersion.current,
        subcommands: [RunCommand.self, ExecCommand.self, JobsCommand.self, QueueCommand.self, ServeCommand.self, ServicesCommand.self, StorageCommand.self, BenchCommand.self, GatewayCommand.self, LoginCommand.self, UpCommand.self, ServerCommand.self, AgentCommand.self,
                      NodesCommand.self, ProjectsCommand.self, UsageCommand.self, InvoicesCommand.self, BudgetCommand.self, PricesCommand.self, CreditsCommand.self, QuotaCommand.self, TokensCommand.self, UICommand.self, SecretsCommand.self, AuditCommand.self, AdminCommand.self, SimCommand.self, PlanCommand.self, VersionCommand.self, ExecEnvCommand.self, FetchInputsCommand.self]
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
