/// The one retry loop of the CLI and the agent: calls again while a failure is passing (a server
/// restarting, or not up yet), up to `attempts` more times, `interval` apart. `onRetry` hears each
/// retry (its number from 1, and the failure) before the wait.
package func retrying<T>(attempts: Int, every interval: Duration, when passing: (any Error) -> Bool,
                         onRetry: (Int, any Error) -> Void = { _, _ in }, _ call: () async throws -> T) async throws -> T {
    var failures = 0
    while true {
        do {
            return try await call()
        } catch {
            guard passing(error), failures < attempts else { throw error }
            failures += 1
            onRetry(failures, error)
            try await Task.sleep(for: interval)
        }
    }
}

extension ClientError {
    /// No answer from the server: worth asking again once it is back.
    package var isUnreachable: Bool { if case .unreachable = self { true } else { false } }
}
