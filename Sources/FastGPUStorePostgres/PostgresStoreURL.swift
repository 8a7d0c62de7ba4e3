public import FastGPUStore
import Foundation
public import PostgresNIO

/// Where a PostgreSQL store lives: `postgres://USER@HOST[:PORT]/DATABASE[?sslmode=disable|require]`.
/// The password never travels in the URL (it would show in `ps` and in shell history): it comes
/// from a file or the environment, read by whoever builds this.
public struct PostgresStoreURL: Sendable, Equatable, CustomStringConvertible {
    public var user: String
    public var host: String
    public var port: Int
    public var database: String
    public var requireTLS: Bool

    public init(_ text: String) throws {
        guard text.hasPrefix("postgres://") || text.hasPrefix("postgresql://"),
              let url = URLComponents(string: text), let host = url.host, !host.isEmpty else {
            throw StoreError("the store must look like postgres://USER@HOST[:PORT]/DATABASE, not '\(text.prefix(200))'")
        }
        guard url.password == nil else {
            throw StoreError("put no password in the store URL (it shows in process listings): use --store-password-file or FASTGPU_STORE_PASSWORD")
        }
        guard let user = url.user, !user.isEmpty, user.count <= 63 else { throw StoreError("the store URL needs a user: postgres://USER@HOST/DATABASE") }
        let database = String(url.path.drop { $0 == "/" })
        guard !database.isEmpty, database.count <= 63, !database.contains("/") else {
            throw StoreError("the store URL needs a database: postgres://USER@HOST/DATABASE")
        }
        // Names go to pg_dump and pg_restore too: none may read as an option or a connection string.
        for (what, name) in [("user", user), ("database", database), ("host", host)] {
            guard !name.hasPrefix("-"), !name.contains("="), name.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7F }) else {
                throw StoreError("the store URL's \(what) may not begin with '-' or hold '=', spaces or control characters")
            }
        }
        let port = url.port ?? 5432
        guard (1...65535).contains(port) else { throw StoreError("the store URL's port must be 1 to 65535") }
        var requireTLS = false
        for item in url.queryItems ?? [] {
            switch (item.name, item.value) {
            case ("sslmode", "disable"): requireTLS = false
            case ("sslmode", "require"): requireTLS = true
            default: throw StoreError("the store URL knows only ?sslmode=disable or ?sslmode=require, not '\(item.name)=\(item.value ?? "")'")
            }
        }
        self.user = user
        self.host = host
        self.port = port
        self.database = database
        self.requireTLS = requireTLS
    }

    /// The URL without secrets (there are none in it): what logs and messages show.
    public var description: String { "postgres://\(user)@\(host):\(port)/\(database)\(requireTLS ? "?sslmode=require" : "")" }

    var tls: PostgresClient.Configuration.TLS {
        requireTLS ? .require(.makeClientConfiguration()) : .disable
    }

    /// `lockTimeout`: how long a statement of this client waits for a row lock (the lease's,
    /// held by a takeover) before it fails, and so its commit with it.
    ///
    /// The database also probes every connection of this client after two silent seconds and
    /// drops it after two more unanswered probes: a control plane cut off mid-commit holds the
    /// lease row (its commit's epoch check) until then, so a successor's takeover waits about
    /// that long. (An idle-in-transaction timeout would end such sessions sooner, but it ends a
    /// merely slow client's session under its feet, which PostgresNIO does not survive well.)
    public func clientConfiguration(password: String?, lockTimeout: Duration = .seconds(5)) -> PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
        // A control plane serves many requests at once; PostgreSQL's default allows 100 connections in all.
        configuration.options.maximumConnections = 20
        let milliseconds = max(500, lockTimeout.components.seconds * 1000 + lockTimeout.components.attoseconds / 1_000_000_000_000_000)
        configuration.options.additionalStartupParameters = [("lock_timeout", String(milliseconds)),
                                                             ("tcp_keepalives_idle", "2"), ("tcp_keepalives_interval", "1"),
                                                             ("tcp_keepalives_count", "2")]
        return configuration
    }

    func connectionConfiguration(password: String?) throws -> PostgresConnection.Configuration {
        PostgresConnection.Configuration(host: host, port: port, username: user, password: password, database: database,
                                         tls: requireTLS ? .require(try .init(configuration: .makeClientConfiguration())) : .disable)
    }

    /// The password from `file` (its first line) or, without one, from `FASTGPU_STORE_PASSWORD`
    /// or `PGPASSWORD`; nil when none is given (trust or peer authentication).
    public static func password(file: String?, environment: [String: String]) throws -> String? {
        if let file {
            var status = stat()
            guard stat(file, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, let handle = FileHandle(forReadingAtPath: file) else {
                throw StoreError("cannot read the store password file \(file) (it must be a regular file)")
            }
            defer { try? handle.close() }
            let data = (try? handle.read(upToCount: 4097)) ?? Data()
            guard data.count <= 4096 else { throw StoreError("the store password file \(file) is over 4 KiB") }
            let line = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
            guard !line.isEmpty else { throw StoreError("the store password file \(file) is empty") }
            return line
        }
        return environment["FASTGPU_STORE_PASSWORD"] ?? environment["PGPASSWORD"]
    }
}
