@testable import FastGPUAgent
import Foundation
import Testing

/// What an agent keeps in agent-state.json across its restarts.
@Suite struct LocalStateTests {
    @Test func unreportedExitsSurviveARestartAndOldFilesStillRead() throws {
        var state = LocalState(server: "http://a:8470", nodeID: 3, token: "fgpu_x", workloads: [:])
        state.unreportedExits = [7: .init(epoch: 41, code: 0), 9: .init(epoch: 44, code: 137)]
        let read = try JSONDecoder().decode(LocalState.self, from: try JSONEncoder().encode(state))
        #expect(read.unreportedExits == state.unreportedExits)
        // A file an agent wrote before exits were kept.
        let old = #"{"server":"http://a:8470","nodeID":3,"token":"fgpu_x","workloads":[]}"#
        #expect(try JSONDecoder().decode(LocalState.self, from: Data(old.utf8)).unreportedExits == nil)
    }

    @Test func aSavedStateBelongsToAnyListThatSharesAControlPlane() {
        let state = LocalState(server: "http://a:8470,http://b:8470", nodeID: 3, token: "fgpu_x", workloads: [:])
        #expect(state.isFor(servers: "http://b:8470/, http://a:8470"))
        #expect(state.isFor(servers: "http://c:8470,http://a:8470"))
        #expect(!state.isFor(servers: "http://c:8470"))
    }
}
