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
    /// Registered by its HELLO and not heard from since (``WorkerRegistry/maxJoining``).
    public internal(set) var joining = true
    /// Its HELLO came from a peer registered already (a restart).
    public internal(set) var rejoined = false
}

/// Registered workers by routing id, with credit, in-flight tasks and liveness (zguide's
/// Paranoid Pirate). Pure bookkeeping: time comes in as a parameter, nothing here sleeps or
/// touches a socket.
public struct WorkerRegistry: Sendable {
    public let heartbeatInterval: Double
    public let heartbeatTimeout: Double
    /// Joining workers (registered by a HELLO, no message since) held at most; a HELLO past it
    /// forgets the oldest joining one (docs/PROTOCOL.md, "Handshake"). On an insecure endpoint
    /// anyone can say HELLO with the right config hash under as many routing ids as it opens
    /// connections, and each joining record costs a heartbeat per interval and a place in every
    /// scheduling pass until it expires; a real worker sends READY right after WELCOME, so it
    /// is joining for one round trip, and 256 of them joining at once is far beyond any cluster.
    public static let defaultMaxJoining = 256
    public let maxJoining: Int
    private var records: [RoutingID: WorkerRecord] = [:]
    /// The joining workers' registration sequence numbers (oldest forgotten first).
    private var joiningPeers: [RoutingID: UInt64] = [:]
    private var nextSequence: UInt64 = 0
    /// The most workers joining at once so far (for the coordinator's report).
    public private(set) var peakJoining = 0

    public init(heartbeatInterval: Double, heartbeatTimeout: Double, maxJoining: Int = WorkerRegistry.defaultMaxJoining) {
        self.heartbeatInterval = heartbeatInterval
        self.heartbeatTimeout = heartbeatTimeout
        self.maxJoining = max(1, maxJoining)
    }

    /// Registered workers in registration order.
    public var workers: [WorkerRecord] { records.values.sorted { $0.sequence < $1.sequence } }
    public var count: Int { records.count }
    public func worker(_ peer: RoutingID) -> WorkerRecord? { records[peer] }
    public func contains(_ peer: RoutingID) -> Bool { records[peer] != nil }
    /// Workers registered by a HELLO and not heard from since.
    public var joiningCount: Int { joiningPeers.count }

    /// What ``register(_:hello:now:)`` replaced or forgot.
    public struct Registration: Equatable, Sendable {
        /// The peer's old record, when it was registered already (a restart).
        public var previous: WorkerRecord?
        /// The oldest joining worker, forgotten to keep at most ``maxJoining`` joining.
        public var forgotten: WorkerRecord?
    }

    /// Registers the sender of a HELLO with no credit, as joining. A HELLO from a peer already
    /// registered is a restart: the old record is replaced and returned (its in-flight tasks are
    /// lost). With ``maxJoining`` workers joining already, the oldest of them is forgotten first.
    @discardableResult
    public mutating func register(_ peer: RoutingID, hello: HelloMessage, now: Double) -> Registration {
        var registration = Registration(previous: records[peer])
        if joiningPeers[peer] == nil, joiningPeers.count >= maxJoining,
           let oldest = joiningPeers.min(by: { $0.value < $1.value })?.key {
            registration.forgotten = remove(oldest)
        }
        records[peer] = WorkerRecord(peer: peer, name: hello.name, kind: hello.kind, capacity: Int(hello.capacity), credit: 0,
                                     inFlight: [], liveness: PeerLiveness(interval: heartbeatInterval, timeout: heartbeatTimeout, now: now),
                                     sequence: nextSequence)
        records[peer]?.rejoined = registration.previous != nil
        joiningPeers[peer] = nextSequence
        peakJoining = max(peakJoining, joiningPeers.count)
        nextSequence += 1
        return registration
    }

    /// Forgets a worker (GOODBYE, or declared dead); returns its record.
    @discardableResult
    public mutating func remove(_ peer: RoutingID) -> WorkerRecord? {
        joiningPeers[peer] = nil
        return records.removeValue(forKey: peer)
    }

    /// Notes a message from `peer` (any message proves it alive, and ends its joining). False
    /// if it is not registered.
    @discardableResult
    public mutating func heard(from peer: RoutingID, at now: Double) -> Bool {
        guard records[peer] != nil else { return false }
        records[peer]?.liveness.heard(at: now)
        if records[peer]?.joining == true {
            records[peer]?.joining = false
            joiningPeers[peer] = nil
        }
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
        // Filtered before sorted: this runs after every message the coordinator receives.
        let dead = records.values.filter { $0.liveness.isExpired(at: now) }.sorted { $0.sequence < $1.sequence }
        for record in dead { remove(record.peer) }
        return dead
    }

    /// Workers owed a heartbeat, in registration order; each is marked as sent at `now`.
    public mutating func heartbeatsDue(now: Double) -> [RoutingID] {
        let due = records.values.filter { $0.liveness.isHeartbeatDue(at: now) }.sorted { $0.sequence < $1.sequence }.map(\.peer)
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
