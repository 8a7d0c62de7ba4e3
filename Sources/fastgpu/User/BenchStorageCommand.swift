import ArgumentParser
import FastGPUStorage
import Foundation

extension BenchCommand {
    /// `fastgpu bench storage`: how fast FastGPU's own S3 client moves a file to a bucket and back.
    struct Storage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "storage",
            abstract: "Upload a file to an S3-compatible bucket and download it again; report MiB/s each way.",
            discussion: """
                Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, as for the aws CLI, \
                so the same shell can time `aws s3 cp` against it (scripts/bench-storage.sh does both).
                """)

        @Option(help: ArgumentHelp("The backend's URL.", valueName: "url")) var endpoint: String
        @Option(help: "The bucket.") var bucket: String
        @Option(help: "The region the signature names.") var region = "us-east-1"
        @Option(help: "path or virtual-host addressing.") var addressing = "path"
        @Option(help: "The object key.") var key = "fastgpu-bench/object.bin"
        @Option(help: ArgumentHelp("The file to upload.", valueName: "file")) var file: String
        @Option(help: "Parts sent at once.") var parallelParts = 4
        @Option(help: "Part size in MiB (5 to 512).") var partMiB = 16
        @Flag(help: "Upload only.") var noDownload = false

        func validate() throws {
            guard (1...64).contains(parallelParts) else { throw ValidationError("--parallel-parts must be 1 to 64") }
            guard (5...512).contains(partMiB) else { throw ValidationError("--part-mib must be 5 to 512") }
            guard S3Endpoint.Addressing(rawValue: addressing) != nil else { throw ValidationError("--addressing must be path or virtual-host") }
        }

        func run() async throws {
            let environment = ProcessInfo.processInfo.environment
            guard let keyID = environment["AWS_ACCESS_KEY_ID"], let secret = environment["AWS_SECRET_ACCESS_KEY"] else {
                throw CommandFailure("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
            }
            let target: S3Endpoint
            do {
                target = try S3Endpoint(url: endpoint, region: region, bucket: bucket, addressing: S3Endpoint.Addressing(rawValue: addressing)!)
            } catch { throw CommandFailure("\(error)") }
            let http = S3Client.makeHTTPClient()
            let s3 = S3Client(endpoint: target, credentials: S3Credentials(accessKeyID: keyID, secretAccessKey: secret,
                                                                           sessionToken: environment["AWS_SESSION_TOKEN"]), http: http)
            let outcome: Result<Void, any Error>
            do { try await transfer(s3); outcome = .success(()) } catch { outcome = .failure(error) }
            try? await http.shutdown()
            try outcome.get()
        }

        func transfer(_ s3: S3Client) async throws {
            var options = S3TransferOptions()
            options.parallelParts = parallelParts
            options.partSizeBytes = partMiB << 20
            let clock = ContinuousClock()
            do {
                let start = clock.now
                let up = try await s3.uploadFile(at: file, key: key, options: options)
                let upSeconds = Self.seconds(clock.now - start)
                print("upload    \(Self.mib(up.size)) MiB in \(String(format: "%.2f", upSeconds)) s = \(String(format: "%.1f", Self.mib(up.size) / upSeconds)) MiB/s  sha256 \(up.sha256)")
                guard !noDownload else { return }
                let downStart = clock.now
                let down = try await s3.downloadFile(key, to: file + ".download")
                defer { try? FileManager.default.removeItem(atPath: file + ".download") }
                let downSeconds = Self.seconds(clock.now - downStart)
                print("download  \(Self.mib(down.size)) MiB in \(String(format: "%.2f", downSeconds)) s = \(String(format: "%.1f", Self.mib(down.size) / downSeconds)) MiB/s  sha256 \(down.sha256)")
                guard down.sha256 == up.sha256 else { throw CommandFailure("the downloaded object differs from the file") }
            } catch let error as CommandFailure {
                throw error
            } catch {
                throw CommandFailure("\(error)")
            }
        }

        static func seconds(_ duration: Duration) -> Double {
            Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        }

        static func mib(_ bytes: Int64) -> Double { Double(bytes) / 1_048_576 }
    }
}
