import Foundation
import Testing

/// `fastgpu server --tls-cert --tls-key`, with a private CA made by openssl for this test: the
/// agent and the CLI trust it with `--ca-file`; nothing speaks plain HTTP to the port.
@Suite(.serialized) struct TLSTests {
    /// A CA and a certificate for 127.0.0.1 signed by it, in `directory`.
    static func makeCertificates(in directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let script = """
            set -e
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=fastgpu-test-ca 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext 2>/dev/null
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw ServerProcessTests.CLIError("openssl could not make the test certificates") }
    }

    @Test(.timeLimit(.minutes(1))) func theServerAgentsAndCLISpeakHTTPSWithAPrivateCA() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fastgpu-tls-\(UInt64.random(in: 0...UInt64.max))").path
        let certificates = directory + "/certs"
        try Self.makeCertificates(in: certificates)
        let cluster = try LocalCluster(serverArguments: ["--tls-cert", certificates + "/server.pem", "--tls-key", certificates + "/server.key"],
                                       caFile: certificates + "/ca.pem", directory: directory)
        #expect(cluster.url.hasPrefix("https://"))
        try cluster.startAgent("n1", gpus: "1xH100-80GB")
        #expect(cluster.waitForAgent("n1", "registered as node") != nil, "the agent registers over https, trusting the CA")

        // The CLI with --ca-file runs a job end to end.
        let run = Process()
        run.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        run.arguments = ["60", CLITests.binary.path, "run", "--server", cluster.url, "--token", cluster.admin, "--ca-file", certificates + "/ca.pem",
                         "--", "echo", "over tls"]
        run.environment = ["HOME": directory, "PATH": "/usr/bin:/bin"]
        let out = Pipe()
        run.standardOutput = out
        run.standardError = FileHandle.nullDevice
        try run.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        run.waitUntilExit()
        #expect(run.terminationStatus == 0 && output == "over tls\n", "\(output)")

        // Without the CA the certificate is refused; plain HTTP gets no API.
        let untrusted = try ServerProcessTests.curl(["-w", "%{http_code}", "-o", "/dev/null", cluster.url + "/healthz"])
        #expect(untrusted == "000", "curl without the CA refuses the certificate")
        let plain = try ServerProcessTests.curl(["-w", "%{http_code}", "-o", "/dev/null", "http://127.0.0.1:\(cluster.port)/healthz"])
        #expect(plain != "200", "no plain HTTP on the https port")
        let noCA = Process()
        noCA.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        noCA.arguments = ["60", CLITests.binary.path, "jobs", "--server", cluster.url, "--token", cluster.admin]
        noCA.environment = ["HOME": directory, "PATH": "/usr/bin:/bin"]
        let errors = Pipe()
        noCA.standardOutput = FileHandle.nullDevice
        noCA.standardError = errors
        try noCA.run()
        let said = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        noCA.waitUntilExit()
        #expect(noCA.terminationStatus != 0 && said.split(separator: "\n").count == 1, "one line: \(said)")
    }
}
