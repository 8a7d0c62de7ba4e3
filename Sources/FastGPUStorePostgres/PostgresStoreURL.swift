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

    /// `idleTransactionTimeout`: how long the database lets a transaction of this client sit
    /// idle before it ends the session. A control plane cut off mid-commit holds the lease row
    /// (its commit's epoch check) until then, so a successor's takeover waits for it: keep it
    /// under the lease's life (`fastgpu server` uses the lease's life less one second).
    public func clientConfiguration(password: String?, idleTransactionTimeout: Duration = .seconds(5)) -> PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
        // A control plane serves many requests at once; PostgreSQL's default allows 100 connections in all.
        configuration.options.maximumConnections = 20
        let milliseconds = max(500, idleTransactionTimeout.components.seconds * 1000 + idleTransactionTimeout.components.attoseconds / 1_000_000_000_000_000)
        configuration.options.additionalStartupParameters = [("idle_in_transaction_session_timeout", String(milliseconds))]
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
            guard let data = FileManager.default.contents(atPath: file), data.count <= 4096 else {
                throw StoreError("cannot read the store password file \(file) (or it is over 4 KiB)")
            }
            let line = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
            guard !line.isEmpty else { throw StoreError("the store password file \(file) is empty") }
            return line
        }
        return environment["FASTGPU_STORE_PASSWORD"] ?? environment["PGPASSWORD"]
    }
}
