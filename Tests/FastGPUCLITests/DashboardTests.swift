import Foundation
import Testing

/// `.ci/run` installs Chromium and says so: there, a missing browser fails instead of skipping.
let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first { FileManager.default.isExecutableFile(atPath: $0) }
let dashboardTestsRun = chromium != nil || ProcessInfo.processInfo.environment["FASTGPU_REQUIRE_CHROMIUM"] == "1"

/// The web dashboard as people see it: a real server and agent, real headless Chromium (its
/// script runs: local times, the log follower), a cluster admin and a member of one project.
/// Each page is rendered to a screenshot (kept in the test's directory) and its DOM checked for
/// what it must and must not show.
@Suite(.serialized, .enabled(if: dashboardTestsRun, "no Chromium here (Debian: chromium)"))
struct DashboardTests {
    /// A browser with its own profile: a sign-in link's cookie stays for the next pages.
    struct Browser {
        let profile: String
        let shots: String

        init(_ name: String, in directory: String) throws {
            profile = directory + "/chromium-\(name)"
            shots = directory + "/screenshots"
            try FileManager.default.createDirectory(atPath: shots, withIntermediateDirectories: true)
        }

        /// The page's DOM after its scripts ran (3 s of virtual time), and a screenshot of it.
        func open(_ url: String, shot: String? = nil) throws -> String {
            let base = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--user-data-dir=\(profile)",
                        "--virtual-time-budget=3000", "--window-size=1280,1000"]
            if let shot {
                _ = try run(base + ["--screenshot=\(shots)/\(shot).png", url])
                let size = (try FileManager.default.attributesOfItem(atPath: "\(shots)/\(shot).png")[.size] as? Int) ?? 0
                #expect(size > 10_000, "\(shot).png is \(size) bytes: nothing rendered?")
            }
            return try run(base + ["--dump-dom", url])
        }

        private func run(_ arguments: [String]) throws -> String {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try #require(chromium, "no Chromium"))
            process.arguments = arguments
            process.currentDirectoryURL = URL(fileURLWithPath: shots)
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            try process.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
    }

    @Test(.timeLimit(.minutes(3))) func adminAndMemberSeeTheirPagesAndAMemberNeverSeesAnotherProjectsJobs() throws {
        let cluster = try LocalCluster()
        try cluster.startAgent("gpu-a", gpus: "4xH100-80GB")
        #expect(cluster.waitForAgent("gpu-a", "registered") != nil)
        _ = try cluster.post("/v1/projects", #"{"name":"vision"}"#)
        _ = try cluster.post("/v1/projects", #"{"name":"speech"}"#)
        _ = try cluster.curl(["-X", "PUT", cluster.url + "/v1/projects/vision/members/mia", "-d", #"{"role":"member"}"#])
        let mia = try cluster.json(cluster.post("/v1/tokens", #"{"name":"mia","subject":"mia"}"#))["token"] as? String ?? ""
        func submit(_ project: String, _ command: [String], gpus: Int) throws -> Int {
            let body = try JSONSerialization.data(withJSONObject: ["project": project, "command": command, "resources": ["gpus": gpus]])
            return try (cluster.json(cluster.post("/v1/jobs", String(decoding: body, as: UTF8.self)))["id"] as? Int).orThrow("no job id")
        }
        let talking = try submit("vision", ["sh", "-c", "echo hello from the dashboard; echo second line; sleep 300"], gpus: 1)
        let secret = try submit("speech", ["sleep", "300"], gpus: 2)
        let waiting = try submit("vision", ["true"], gpus: 8)
        // The talking job runs and its lines are in (the log stream has them once printed).
        for _ in 0..<600 {
            let logs = try cluster.get("/v1/jobs/\(talking)/logs")
            if logs.contains("second line") { break }
            Thread.sleep(forTimeInterval: 0.05)  // polling a real process's output, not timing a result
        }

        let directory = cluster.directory
        func link(_ token: String) throws -> String {
            let reply = try ServerProcessTests.curl(["-X", "POST", "-H", "Authorization: Bearer \(token)", cluster.url + "/v1/ui/sessions"])
            return try cluster.url + ((cluster.json(reply)["path"] as? String).orThrow("no link: \(reply)"))
        }

        // Nobody signed in: every page is the sign-in page.
        let stranger = try Browser("stranger", in: directory)
        let refused = try stranger.open(cluster.url + "/ui/jobs", shot: "signin")
        #expect(refused.contains("<h1>Sign in</h1>") && !refused.contains("data-job="))

        // The cluster admin: every project's jobs, the nodes and their GPUs.
        let admin = try Browser("admin", in: directory)
        // (A link opens once: the screenshot of the overview is taken after, with the cookie.)
        _ = try admin.open(try link(cluster.admin))
        let overview = try admin.open(cluster.url + "/ui", shot: "admin-overview")
        #expect(overview.contains(#"<span id="subject">admin</span>"#) && overview.contains("H100-80GB"), "\(overview.prefix(2000))")
        #expect(overview.contains("/ui/jobs/\(waiting)"), "the waiting job is in the queue")
        let jobs = try admin.open(cluster.url + "/ui/jobs", shot: "admin-jobs")
        for id in [talking, secret, waiting] { #expect(jobs.contains(#"data-job="\#(id)""#), "job \(id) on the admin's jobs page") }
        let running = try admin.open(cluster.url + "/ui/jobs/\(talking)", shot: "admin-job-running")
        #expect(running.contains("hello from the dashboard") && running.contains("second line"), "the log follower printed the lines: \(running.suffix(3000))")
        #expect(running.contains(#"<span class="state running" id="state">running</span>"#))
        let pending = try admin.open(cluster.url + "/ui/jobs/\(waiting)", shot: "admin-job-pending")
        #expect(pending.contains("Why it waits") && pending.contains(#"id="state">pending"#))
        let nodes = try admin.open(cluster.url + "/ui/nodes", shot: "admin-nodes")
        #expect(nodes.contains(#"data-node="gpu-a""#) && nodes.contains("gpu3") && nodes.contains("simulated"))
        _ = try cluster.post("/v1/services", #"{"name":"detect","project":"speech","command":["sleep","300"],"replicas":{"min":0,"max":1}}"#)
        let services = try admin.open(cluster.url + "/ui/services", shot: "admin-services")
        #expect(services.contains(#"data-service="detect""#) && services.contains("scaled to zero"), "\(services.suffix(2000))")
        let projects = try admin.open(cluster.url + "/ui/projects", shot: "admin-projects")
        for name in ["default", "vision", "speech"] { #expect(projects.contains(#"data-project="\#(name)""#)) }

        // A member of vision: vision's jobs, never speech's, not even by its address.
        let member = try Browser("member", in: directory)
        _ = try member.open(try link(mia))
        let memberOverview = try member.open(cluster.url + "/ui", shot: "member-overview")
        #expect(memberOverview.contains(#"<span id="subject">mia</span>"#) && !memberOverview.contains("cluster admin"))
        let memberJobs = try member.open(cluster.url + "/ui/jobs", shot: "member-jobs")
        #expect(memberJobs.contains(#"data-job="\#(talking)""#) && memberJobs.contains(#"data-job="\#(waiting)""#))
        #expect(!memberJobs.contains(#"data-job="\#(secret)""#) && !memberJobs.contains("speech"), "a member sees another project's job")
        let memberServices = try member.open(cluster.url + "/ui/services")
        #expect(!memberServices.contains(#"data-service="detect""#), "speech's service is not mia's to see")
        let memberProjects = try member.open(cluster.url + "/ui/projects", shot: "member-projects")
        #expect(memberProjects.contains(#"data-project="vision""#) && !memberProjects.contains(#"data-project="speech""#)
                && !memberProjects.contains(#"data-project="default""#))
        let hidden = try member.open(cluster.url + "/ui/jobs/\(secret)", shot: "member-other-project")
        #expect(hidden.contains("Not found") && !hidden.contains("sleep 300"), "\(hidden.prefix(1500))")
        let filtered = try member.open(cluster.url + "/ui/jobs?project=speech")
        #expect(filtered.contains("Not found") && !filtered.contains("data-job="))
        let memberRunning = try member.open(cluster.url + "/ui/jobs/\(talking)")
        #expect(memberRunning.contains("hello from the dashboard"))

        // Signing out ends the session: its token is revoked, the cookie cleared.
        let opened = try ServerProcessTests.curl(["-s", "-i", try link(mia)])
        let session = try (opened.split(separator: "\r\n").first { $0.hasPrefix("Set-Cookie: fastgpu_session=") }).orThrow("no cookie: \(opened)")
            .dropFirst("Set-Cookie: fastgpu_session=".count).prefix { $0 != ";" }
        #expect(session.hasPrefix("fgpu_") && session != mia, "a session has a token of its own")
        #expect(opened.contains("HttpOnly") && opened.contains("SameSite=Lax") && opened.contains("Path=/ui"))
        func status(_ arguments: [String]) throws -> String {
            try ServerProcessTests.curl(["-s", "-o", "/dev/null", "-w", "%{http_code}"] + arguments)
        }
        #expect(try status(["-H", "Cookie: fastgpu_session=\(session)", cluster.url + "/ui/jobs"]) == "200")
        #expect(try status(["-H", "Authorization: Bearer \(session)", cluster.url + "/v1/jobs"]) == "200", "it is an ordinary token of mia's")
        #expect(try status(["-H", "Cookie: fastgpu_session=\(session)", cluster.url + "/v1/jobs"]) == "401", "the API never takes the cookie")
        #expect(try status(["-X", "POST", "-H", "Origin: https://evil.example", "-H", "Cookie: fastgpu_session=\(session)", cluster.url + "/ui/logout"]) == "403")
        #expect(try status(["-X", "POST", "-H", "Sec-Fetch-Site: cross-site", "-H", "Cookie: fastgpu_session=\(session)", cluster.url + "/ui/logout"]) == "403")
        // What a browser sends for the page's own form (it may say `Origin: null`): accepted.
        #expect(try status(["-X", "POST", "-H", "Sec-Fetch-Site: same-origin", "-H", "Origin: null", "-H", "Cookie: fastgpu_session=\(session)",
                            cluster.url + "/ui/logout"]) == "303")
        #expect(try status(["-H", "Cookie: fastgpu_session=\(session)", cluster.url + "/ui/jobs"]) == "303", "signed out: back to the sign-in page")
        #expect(try status(["-H", "Authorization: Bearer \(mia)", cluster.url + "/v1/jobs"]) == "200", "mia's own token is untouched")
        // A used link does not open a second session.
        let once = try link(mia)
        _ = try status([once])
        #expect(try status([once]) == "401")
        print("dashboard screenshots: \(directory)/screenshots")
    }
}
