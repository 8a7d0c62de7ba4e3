@testable import FastGPUAgent
import Foundation
import Testing

/// An ended allocation's directory (its outputs, logs, exit code) stays a day on its node, so a
/// failed upload can be retried from it; then it goes, unless an upload still needs it.
@Suite struct AllocationSweepTests {
    @Test func onlyDirectoriesEndedMoreThanADayAgoAndNotNeededGo() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sweep-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let now = Date(timeIntervalSince1970: 2_000_000_000)
        func allocation(_ id: Int, endedHoursAgo: Double?) throws {
            let directory = root + "/\(id)"
            try FileManager.default.createDirectory(atPath: directory + "/work", withIntermediateDirectories: true)
            guard let hours = endedHoursAgo else { return }
            FileManager.default.createFile(atPath: directory + "/exit-code", contents: Data("0\n".utf8))
            try FileManager.default.setAttributes([.modificationDate: now.addingTimeInterval(-hours * 3600)], ofItemAtPath: directory + "/exit-code")
        }
        try allocation(1, endedHoursAgo: 30)     // old: goes
        try allocation(2, endedHoursAgo: 2)      // recent: a retry may still need it
        try allocation(3, endedHoursAgo: nil)    // running, or never started
        try allocation(4, endedHoursAgo: 48)     // old, but its upload is listed: stays
        try allocation(5, endedHoursAgo: 25)     // old: goes
        FileManager.default.createFile(atPath: root + "/agent-notes", contents: Data())   // not an allocation
        let expired = Agent.expiredAllocationDirectories(in: root, keep: Agent.keepEndedAllocations, now: now, busy: [4])
        #expect(expired == [root + "/1", root + "/5"])
    }
}
