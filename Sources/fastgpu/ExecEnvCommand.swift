import ArgumentParser
import Foundation

/// The last step of a workload's start, run by the agent's wrapper as the job's user: reads the
/// job's environment (NUL-separated `NAME=VALUE`) from an inherited descriptor — opened by root
/// on a file only root may read — and execs the command with exactly that environment.
///
/// Why not the wrapper's own environment: the wrapper runs as root, and a job's env (`PATH`,
/// `LD_PRELOAD`, `CONTAINERS_CONF`) must never reach a root process. Why not the command line:
/// anyone on the node may read a process' arguments.
struct ExecEnvCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "exec-env", abstract: "(internal) exec a command with the environment read from a descriptor.",
                                                    shouldDisplay: false)

    @Option(help: "The descriptor to read the environment from.")
    var fd: Int32

    @Argument(parsing: .postTerminator)
    var command: [String] = []

    func run() throws {
        guard !command.isEmpty else { throw CommandFailure("exec-env: no command") }
        let data = FileHandle(fileDescriptor: fd, closeOnDealloc: true).readDataToEndOfFile()
        close(fd)
        let entries = data.split(separator: 0, omittingEmptySubsequences: true).map { String(decoding: $0, as: UTF8.self) }
        let path = entries.first { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) } ?? "/usr/local/bin:/usr/bin:/bin"
        // execvp's PATH search uses the job's PATH, not the wrapper's.
        let program = command[0].contains("/") ? command[0]
            : path.split(separator: ":").map { "\($0)/\(command[0])" }.first { FileManager.default.isExecutableFile(atPath: $0) } ?? command[0]
        let argv = command.map { strdup($0) } + [nil]
        let envp = entries.map { strdup($0) } + [nil]
        execve(program, argv, envp)
        let reason = String(cString: strerror(errno))
        FileHandle.standardError.write(Data("fastgpu: cannot run \(command[0]): \(reason)\n".utf8))
        Foundation.exit(errno == ENOENT ? 127 : 126)
    }
}
