import WireProtocol

/// What the coordinator knows about one connected worker.
public struct WorkerRecord: Equatable, Sendable {
    public let peer: RoutingID
    public let name: String
    public let kind: WorkerKind
    /// Tasks the worker can hold at once.
    public let capacity: Int
    /// Tasks the worker asked for (READY) and has not been sent yet.
    public internal(set) var credit: Int
    /// Task ids sent to the worker and not yet answered.
    public internal(set) var inFlight: Set<UInt64>
    public internal(set) var liveness: PeerLiveness
    /// Registration order; breaks ties when choosing a worker.
    public let sequence: UInt64
    /// Results of this worker dropped as invalid or malformed (not stale or late ones).
    public internal(set) var rejectedResults = 0
}

/// Registered workers by routing id, with credit, in-flight tasks and liveness (zguide's
/// Paranoid Pirate). Pure bookkeeping: time comes in as a parameter, nothing here sleeps or
/// touches a socket.
public struct WorkerRegistry: Sendable {
    public let heartbeatInterval: Double
    public let heartbeatTimeout: Double
    private var records: [RoutingID: WorkerRecord] = [:]
    private var nextSequence: UInt64 = 0

    public init(heartbeatInterval: Double, heartbeatTimeout: Double) {
        self.heartbeatInterval = heartbeatInterval
        self.heartbeatTimeout = heartbeatTimeout
    }

    /// Registered workers in registration order.
    public var workers: [WorkerRecord] { records.values.sorted { $0.sequence < $1.sequence } }
    public var count: Int { records.count }
    public func worker(_ peer: RoutingID) -> WorkerRecord? { records[peer] }
    public func contains(_ peer: RoutingID) -> Bool { records[peer] != nil }

    /// Registers the sender of a HELLO with no credit. A HELLO from a peer already registered
    /// is a restart: the old record is replaced and returned (its in-flight tasks are lost).
    @discardableResult
    public mutating func register(_ peer: RoutingID, hello: HelloMessage, now: Double) -> WorkerRecord? {
        let previous = records[peer]
        records[peer] = WorkerRecord(peer: peer, name: hello.name, kind: hello.kind, capacity: Int(hello.capacity), credit: 0,
                                     inFlight: [], liveness: PeerLiveness(interval: heartbeatInterval, timeout: heartbeatTimeout, now: now),
                                     sequence: nextSequence)
        nextSequence += 1
        return previous
    }

    /// Forgets a worker (GOODBYE, or declared dead); returns its record.
    @discardableResult
    public mutating func remove(_ peer: RoutingID) -> WorkerRecord? { records.removeValue(forKey: peer) }

    /// Notes a message from `peer` (any message proves it alive). False if it is not registered.
    @discardableResult
    public mutating func heard(from peer: RoutingID, at now: Double) -> Bool {
        guard records[peer] != nil else { return false }
        records[peer]?.liveness.heard(at: now)
        return true
    }

    /// Notes a message sent to `peer` (it counts as a heartbeat).
    public mutating func sent(to peer: RoutingID, at now: Double) { records[peer]?.liveness.sent(at: now) }

    /// Adds READY credit, clamped so that credit + in-flight never exceeds the capacity the
    /// worker announced. Returns the new credit, nil if `peer` is not registered.
    @discardableResult
    public mutating func grantCredit(_ amount: Int, to peer: RoutingID) -> Int? {
        guard var record = records[peer] else { return nil }
        record.credit = max(0, min(record.credit + max(amount, 0), record.capacity - record.inFlight.count))
        records[peer] = record
        return record.credit
    }

    /// Workers silent for longer than the heartbeat timeout, removed from the registry, in
    /// registration order. Their in-flight task ids are in the returned records.
    public mutating func expire(now: Double) -> [WorkerRecord] {
        let dead = workers.filter { $0.liveness.isExpired(at: now) }
        for record in dead { records.removeValue(forKey: record.peer) }
        return dead
    }

    /// Workers owed a heartbeat, in registration order; each is marked as sent at `now`.
    public mutating func heartbeatsDue(now: Double) -> [RoutingID] {
        let due = workers.filter { $0.liveness.isHeartbeatDue(at: now) }.map(\.peer)
        for peer in due { records[peer]?.liveness.sent(at: now) }
        return due
    }

    /// The worker that should get the next task: one with credit, fewest tasks in flight,
    /// earliest registered.
    public func nextWorkerWithCredit() -> RoutingID? {
        records.values.filter { $0.credit > 0 }
            .min { ($0.inFlight.count, $0.sequence) < ($1.inFlight.count, $1.sequence) }?.peer
    }

    /// Spends one credit of `peer` on `taskID`.
    mutating func assign(_ taskID: UInt64, to peer: RoutingID) {
        guard var record = records[peer] else { return }
        record.credit = max(0, record.credit - 1)
        record.inFlight.insert(taskID)
        records[peer] = record
    }

    /// Counts a result of `peer` dropped as invalid or malformed.
    mutating func noteRejectedResult(from peer: RoutingID) { records[peer]?.rejectedResults += 1 }

    /// Removes `taskID` from `peer`'s in-flight set; false if it was not there.
    mutating func release(_ taskID: UInt64, from peer: RoutingID) -> Bool {
        records[peer]?.inFlight.remove(taskID) != nil
    }
}
