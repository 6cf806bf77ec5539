@testable import Engine
import Foundation
import Synchronization
import Testing

@Suite struct DataShardsTests {
    @Test func shardsAreBalancedByTokensInRowOrder() {
        // Loads after each row: [5,0] → [5,3] → [5,7] → [9,7] → [9,8].
        #expect(DataShards.assignment(lengths: [5, 3, 4, 4, 1], shards: 2) == [0, 1, 1, 0, 1])
        #expect(DataShards.assignment(lengths: [2, 2, 2], shards: 3) == [0, 1, 2])
        #expect(DataShards.assignment(lengths: [7], shards: 2) == [0])
        #expect(DataShards.assignment(lengths: [4, 4], shards: 1) == [0, 0])
        #expect(DataShards.assignment(lengths: [], shards: 2) == [])
    }

    @Test(arguments: [1, 2, 3, 8]) func everyShardRunsOnce(threads: Int) {
        let runs = Mutex([Int](repeating: 0, count: 5))
        DataShards.run(count: 5, threads: threads) { shard in runs.withLock { $0[shard] += 1 } }
        #expect(runs.withLock { $0 } == [1, 1, 1, 1, 1])
    }
}
