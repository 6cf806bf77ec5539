import Dispatch
@testable import Engine
import Foundation
import Testing

/// The inference path's spinning helpers (`cerm_pool.h`): every part runs once, a run returns
/// only when all have, and callers that meet (another thread's run, a run inside a part) are
/// served by running their parts themselves instead of waiting on each other.
@Suite(.serialized) struct ParallelPartsTests {
    /// Per-part slots, written through addresses as the engine's parts do.
    final class Slots: @unchecked Sendable {
        let values: UnsafeMutablePointer<Int>
        let threads: UnsafeMutablePointer<Int>
        let count: Int
        init(_ count: Int) {
            self.count = count
            values = .allocate(capacity: count)
            values.initialize(repeating: 0, count: count)
            threads = .allocate(capacity: count)
            threads.initialize(repeating: 0, count: count)
        }
        deinit {
            values.deallocate()
            threads.deallocate()
        }
    }

    static var thread: Int { ObjectIdentifier(Thread.current).hashValue }

    @Test func everyPartRunsOnceAndTheRunWaitsForAll() {
        for parts in [2, 3, 5] {
            let slots = Slots(parts)
            var spread = 0
            for round in 1...500 {
                ParallelParts.run(parts) { part in
                    // Uneven parts: the caller's is the shortest, so it must wait for the others.
                    var spin = 0
                    for i in 0..<(part * 50) { spin &+= i }
                    slots.values[part] += spin == -1 ? 2 : 1
                    slots.threads[part] = Self.thread
                }
                // Seen right after the run returns: no part is still running or lost.
                #expect((0..<parts).allSatisfy { slots.values[$0] == round })
                if (0..<parts).contains(where: { slots.values[$0] != round }) { return }
                // Part 0 is the caller's; the others run on helpers, each on its own thread
                // (unless another test's run holds the helpers: then all run here).
                #expect(slots.threads[0] == Self.thread)
                if Set((0..<parts).map { slots.threads[$0] }).count == parts { spread += 1 }
            }
            #expect(ParallelParts.helpers >= parts - 1)
            #expect(spread > 0)
        }
    }

    @Test func callersThatMeetRunTheirPartsThemselves() {
        // Four threads at once, each with runs of 2 parts: one holds the helpers, the others
        // run both their parts; every part of every run happens exactly once.
        let callers = 4, rounds = 1000
        let slots = Slots(callers * 2)
        DispatchQueue.concurrentPerform(iterations: callers) { caller in
            for _ in 0..<rounds {
                ParallelParts.run(2) { part in slots.values[caller * 2 + part] += 1 }
            }
        }
        #expect((0..<slots.count).allSatisfy { slots.values[$0] == rounds })

        // A run inside a part: its parts run on the thread of the part that asked.
        let nested = Slots(4)
        ParallelParts.run(2) { outer in
            ParallelParts.run(2) { inner in nested.values[outer * 2 + inner] += 1 }
        }
        #expect((0..<4).allSatisfy { nested.values[$0] == 1 })
    }

    @Test func aHelperThatSleptWakesForTheNextRun() {
        let slots = Slots(2)
        ParallelParts.run(2) { slots.values[$0] += 1 }
        // Past the spin window (0.2 ms): the helper sleeps and must be woken.
        for round in 2...6 {
            Thread.sleep(forTimeInterval: 0.005)
            ParallelParts.run(2) { slots.values[$0] += 1 }
            #expect(slots.values[0] == round && slots.values[1] == round)
        }
    }
}
