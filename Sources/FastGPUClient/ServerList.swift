import Foundation
import Synchronization

/// The base URLs of a cluster's control planes and the one a client uses now. Clients that
/// share one list move on together: when one finds a server gone, the others go to the next
/// one too instead of each finding out for itself.
package final class ServerList: Sendable, CustomStringConvertible {
    package let urls: [String]
    private let index = Mutex<Int>(0)

    /// `text`: one URL or several, comma-separated; trailing slashes are dropped.
    package init(_ text: String) {
        let urls = text.split(separator: ",").map { part -> String in
            var url = part.trimmingCharacters(in: .whitespaces)
            while url.hasSuffix("/") { url.removeLast() }
            return url
        }.filter { !$0.isEmpty }
        self.urls = urls.isEmpty ? [""] : urls
    }

    package var current: (url: String, index: Int) {
        let i = index.withLock { $0 }
        return (urls[i], i)
    }

    /// Moves to the server after `failed`, unless another caller has already moved on from it.
    package func moveOn(from failed: Int) {
        index.withLock { current in
            if current == failed { current = (failed + 1) % urls.count }
        }
    }

    /// The list as it was given, comma-separated.
    package var description: String { urls.joined(separator: ",") }
}
