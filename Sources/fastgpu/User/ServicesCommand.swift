import ArgumentParser
import FastGPUClient
import FastGPUWire
import Foundation
import Yams

/// `fastgpu serve up svc.yaml`: create a service, or roll out a new revision of it.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Deploy model servers as services behind the gateway.",
        subcommands: [Up.self])

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "up",
            abstract: "Create the service a file describes, or roll out its new revision (surge 1, no replica unavailable).",
            discussion: "The file holds the fields of POST /v1/services, in YAML; see docs/services.md.")

        @OptionGroup var connection: ClientOptions
        @Option(help: ArgumentHelp("The service's project (default: the file's, then FASTGPU_PROJECT, then default).", valueName: "name"))
        var project: String?
        @Argument(help: "The service file (YAML).") var file: String

        func run() async throws {
            var body = try ServiceFile.load(path: file)
            body.project = project ?? body.project ?? ClientOptions.project(nil)
            let client = try await connection.client()
            let service: ServiceWire
            do {
                service = try await client.createService(body)
                Output.write("service \(service.name) created (revision \(service.revision)); it answers at /\(service.name)/ on the gateway\n")
            } catch let error as ClientError where error.status == 409 {
                service = try await client.reviseService(body)
                Output.write("service \(service.name) at revision \(service.revision); replicas roll out one at a time\n")
            }
        }
    }
}

/// A service file: the JSON fields of `POST /v1/services`, written as YAML.
enum ServiceFile {
    static func load(path: String) throws -> ServiceSpecBody {
        guard let data = FileManager.default.contents(atPath: path) else { throw CommandFailure("cannot read the service file \(path)") }
        guard data.count <= 1 << 20 else { throw CommandFailure("\(path) is larger than 1 MiB") }
        return try parse(String(decoding: data, as: UTF8.self), path: path)
    }

    static func parse(_ text: String, path: String) throws -> ServiceSpecBody {
        let document: Any?
        do { document = try Yams.load(yaml: text) } catch { throw CommandFailure("\(path) is not valid YAML: \(String(describing: error).split(separator: "\n").first ?? "")") }
        guard let top = document as? [String: Any] else { throw CommandFailure("\(path): a service file is a mapping of keys such as name, command and resources") }
        guard JSONSerialization.isValidJSONObject(top), let json = try? JSONSerialization.data(withJSONObject: top) else {
            throw CommandFailure("\(path): values must be strings, numbers, booleans, lists and mappings")
        }
        do {
            return try JSONDecoder().decode(ServiceSpecBody.self, from: json)
        } catch let error as WireError {
            throw CommandFailure("\(path): \(error.description)")
        } catch let DecodingError.keyNotFound(key, _) {
            throw CommandFailure("\(path): \(key.stringValue) is missing")
        } catch let DecodingError.typeMismatch(_, context) {
            throw CommandFailure("\(path): \(context.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type")
        } catch {
            throw CommandFailure("\(path): \(error)")
        }
    }
}

/// `fastgpu services ls|show|scale|delete|events|logs`.
struct ServicesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "services",
        abstract: "List, inspect, scale and delete services.",
        subcommands: [List.self, Show.self, Scale.self, Delete.self, Events.self, Logs.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "Services you may see, with their replicas.")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions
        @Option(help: "Only this project's.") var project: String?

        func run() async throws {
            let list = try await connection.client().services(project: project)
            if format.json { return try Output.json(list.items) }
            Output.write(Output.table(["NAME", "PROJECT", "REVISION", "READY", "DESIRED", "MIN-MAX", "PATH"], list.items.map { s in
                [s.name, s.project, String(s.revision), String(s.readyReplicas), String(s.desiredReplicas),
                 "\(s.spec.replicas?.min ?? 0)-\(s.spec.replicas?.max ?? 0)", s.deleting ? "(deleting)" : s.path]
            }))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "A service's spec and its replicas.")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions
        @Argument(help: "The service's name.") var name: String

        func run() async throws {
            let s = try await connection.client().service(name)
            if format.json { return try Output.json(s) }
            var text = "service \(s.name) (project \(s.project)), revision \(s.revision)\(s.deleting ? ", deleting" : "")\n"
            text += "  command:   \(s.spec.command.joined(separator: " "))\n"
            if let image = s.spec.image { text += "  image:     \(image)\n" }
            text += "  replicas:  \(s.readyReplicas) ready of \(s.desiredReplicas) desired (min \(s.spec.replicas?.min ?? 0), max \(s.spec.replicas?.max ?? 0))\n"
            if let a = s.spec.autoscaling { text += "  scaling:   \(a.metric ?? "concurrency") target \(a.target ?? 0) per replica\n" }
            text += "  path:      \(s.path) on the gateway\n"
            Output.write(text)
            if !s.replicas.isEmpty {
                Output.write(Output.table(["JOB", "REVISION", "STATE", "NODE", "ENDPOINT", "IN-FLIGHT"], s.replicas.map { r in
                    [String(r.job), String(r.revision), r.state, r.node ?? "-", r.endpoint ?? "-", String(r.inFlight)]
                }))
            }
        }
    }

    struct Scale: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "scale", abstract: "New bounds for the autoscaler (no new revision).")
        @OptionGroup var connection: ClientOptions
        @Option(help: "Fewest replicas (0 lets it scale to zero).") var min: Int?
        @Option(help: "Most replicas.") var max: Int?
        @Argument(help: "The service's name.") var name: String

        func validate() throws {
            guard min != nil || max != nil else { throw ValidationError("give --min, --max or both") }
        }

        func run() async throws {
            let s = try await connection.client().scaleService(name, ScaleServiceBody(min: min, max: max))
            Output.write("service \(s.name): replicas \(s.spec.replicas?.min ?? 0) to \(s.spec.replicas?.max ?? 0), \(s.desiredReplicas) desired now\n")
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "delete", abstract: "Drain every replica, then remove the service.")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The service's name.") var name: String

        func run() async throws {
            let s = try await connection.client().deleteService(name)
            Output.write("service \(s.name): deleting; its \(s.replicas.count) replica(s) drain first\n")
        }
    }

    struct Events: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "events", abstract: "What happened to a service: scaling decisions with their inputs, replicas, revisions.")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions
        @Argument(help: "The service's name.") var name: String

        func run() async throws {
            let list = try await connection.client().serviceEvents(name)
            if format.json { return try Output.json(list.items) }
            Output.write(Output.table(["TIME", "EVENT", "DETAIL"], list.items.map { [$0.time, $0.kind, $0.message] }))
        }
    }

    struct Logs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "logs", abstract: "The output of a service's current replicas, each line prefixed with its job.")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The service's name.") var name: String

        func run() async throws {
            let client = try await connection.client()
            let s = try await client.service(name)
            for replica in s.replicas {
                for try await line in client.logs(of: replica.job, follow: false) {
                    Output.write("[\(replica.job)] \(line.text)" + (line.text.hasSuffix("\n") ? "" : "\n"))
                }
            }
        }
    }
}
