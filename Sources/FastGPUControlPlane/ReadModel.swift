public import FastGPUModel
public import FastGPUStore
import Synchronization

/// What readers see: durable jobs, the queue as the last scheduling pass left it, and who may see
/// what. The control plane publishes into it after each commit, from the rows of that commit, so
/// a reader never sees a change the store could still lose — and reads take a lock, not a turn on
/// the control plane's actor, so they never wait behind a scheduling pass or a write.
public final class ReadModel: Sendable {
    struct Storage {
        var jobs: [JobID: JobView] = [:]
        /// Job ids in submission order (ids only grow): the order of `GET /v1/jobs`.
        var order: [JobID] = []
        var waiting: Set<JobID> = []
        var queue: [QueueEntry] = []
        var queueSlots: [JobID: Int] = [:]
        var members: [ProjectID: [String: MemberRole]] = [:]
        var projectIDs: [String: ProjectID] = [:]
    }

    private let storage = Mutex(Storage())
    let maxPageSize: Int

    init(maxPageSize: Int) { self.maxPageSize = maxPageSize }

    /// Called by the control plane after a commit with what that commit changed.
    func publish(jobs: [JobView], queue: [QueueEntry]?, members: [ProjectID: [String: MemberRole]]?, projectIDs: [String: ProjectID]?) {
        storage.withLock { s in
            for view in jobs {
                if s.jobs.updateValue(view, forKey: view.job.id) == nil {
                    // Commits publish in order and ids only grow, but a restore publishes all at once.
                    if let last = s.order.last, last > view.job.id {
                        s.order.insert(view.job.id, at: s.order.firstIndex { $0 > view.job.id } ?? s.order.endIndex)
                    } else {
                        s.order.append(view.job.id)
                    }
                }
                if view.job.isWaiting { s.waiting.insert(view.job.id) } else { s.waiting.remove(view.job.id) }
            }
            if let queue {
                s.queue = queue
                s.queueSlots = [:]
                for (slot, entry) in queue.enumerated() { s.queueSlots[entry.job] = slot }
            }
            if let members { s.members = members }
            if let projectIDs { s.projectIDs = projectIDs }
        }
    }

    static func role(of principal: Principal, in project: ProjectID, members: [ProjectID: [String: MemberRole]]) -> MemberRole? {
        if principal.clusterAdmin { return .admin }
        guard principal.kind == .user else { return nil }
        return members[project]?[principal.subject]
    }

    /// The caller's role in a project, as of the last commit (the gateway's check on a call).
    public func role(of principal: Principal, inProject project: ProjectID) -> MemberRole? {
        storage.withLock { s in Self.role(of: principal, in: project, members: s.members) }
    }

    private static func queueEntry(for view: JobView, in s: Storage) -> QueueEntry? {
        guard view.job.isWaiting else { return nil }
        if let slot = s.queueSlots[view.job.id] { return s.queue[slot] }
        return QueueEntry(job: view.job.id, project: view.job.project, position: s.queue.count + 1, reason: nil, estimatedStart: nil)
    }

    /// The job with its place in the queue, if the caller may see it.
    public func job(_ id: JobID, by principal: Principal) throws(ControlPlaneError) -> JobView {
        let found: JobView? = storage.withLock { s in
            guard var view = s.jobs[id], Self.role(of: principal, in: view.job.project, members: s.members) != nil else { return nil }
            view.queue = Self.queueEntry(for: view, in: s)
            return view
        }
        guard let found else { throw .notFound("\(id) not found") }
        return found
    }

    func projectID(_ name: String, by principal: Principal) throws(ControlPlaneError) -> ProjectID {
        let id: ProjectID? = storage.withLock { s in
            guard let id = s.projectIDs[name], Self.role(of: principal, in: id, members: s.members) != nil else { return nil }
            return id
        }
        guard principal.kind == .user, let id else { throw .notFound("project \(name) not found") }
        return id
    }

    public func jobs(by principal: Principal, project: String?, states: Set<JobState>, after: JobID?, limit: Int) throws(ControlPlaneError) -> JobPage {
        guard principal.kind == .user else { throw .forbidden("this token is for an agent, not for the API") }
        let projectFilter = try project.map { name throws(ControlPlaneError) in try projectID(name, by: principal) }
        let limit = max(1, min(limit, maxPageSize))
        return storage.withLock { s in
            var start = 0
            if let after {
                var low = 0, high = s.order.count
                while low < high {
                    let mid = (low + high) / 2
                    if s.order[mid] <= after { low = mid + 1 } else { high = mid }
                }
                start = low
            }
            func visible(_ view: JobView) -> Bool {
                (projectFilter == nil || view.job.project == projectFilter) && (states.isEmpty || states.contains(view.job.state))
                    && Self.role(of: principal, in: view.job.project, members: s.members) != nil
            }
            var page: [JobView] = []
            var index = start
            while index < s.order.count && page.count < limit {
                let id = s.order[index]
                index += 1
                guard var view = s.jobs[id], visible(view) else { continue }
                view.queue = Self.queueEntry(for: view, in: s)
                page.append(view)
            }
            let more = s.order[index...].contains { id in s.jobs[id].map(visible) ?? false }
            return JobPage(jobs: page, next: more ? page.last?.job.id : nil)
        }
    }

    /// The pending jobs the caller may see, in queue order, with their views.
    public func queue(by principal: Principal, project: String?) throws(ControlPlaneError) -> [(entry: QueueEntry, view: JobView)] {
        guard principal.kind == .user else { throw .forbidden("this token is for an agent, not for the API") }
        let projectFilter = try project.map { name throws(ControlPlaneError) in try projectID(name, by: principal) }
        return storage.withLock { s in
            var result: [(QueueEntry, JobView)] = []
            func add(_ entry: QueueEntry) {
                guard let view = s.jobs[entry.job], view.job.isWaiting else { return }
                if let projectFilter, entry.project != projectFilter { return }
                if Self.role(of: principal, in: entry.project, members: s.members) != nil { result.append((entry, view)) }
            }
            for entry in s.queue { add(entry) }
            // Submitted since the last pass: behind everything the pass ordered, by submission.
            var position = s.queue.count
            for id in s.waiting.sorted() where s.queueSlots[id] == nil {
                position += 1
                if let view = s.jobs[id] { add(QueueEntry(job: id, project: view.job.project, position: position, reason: nil, estimatedStart: nil)) }
            }
            return result
        }
    }
}
