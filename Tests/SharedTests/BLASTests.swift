@testable import Shared
import Testing

@Suite struct BLASTests {
    /// Deterministic pseudo-random fill so failures reproduce.
    static func fill(_ n: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<n).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 1000
        }
    }

    @Test(arguments: [(1, 1, 1), (3, 5, 7), (17, 1, 9), (13, 31, 2), (64, 33, 65)])
    func sgemmMatchesNaiveReferenceOnOddShapes(shape: (Int, Int, Int)) throws {
        let (m, n, k) = shape
        for transA in [BLAS.Transpose.none, .transpose] {
            for transB in [BLAS.Transpose.none, .transpose] {
                let a = Self.fill(m * k, seed: UInt64(m * 100 + k))
                let b = Self.fill(k * n, seed: UInt64(n * 100 + k + 1))
                let c0 = Self.fill(m * n, seed: 99)
                var fast = c0, slow = c0
                try BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a, b: b, beta: 0.25, c: &fast)
                BLAS.referenceSgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a, b: b, beta: 0.25, c: &slow)
                for i in 0..<(m * n) {
                    #expect(abs(fast[i] - slow[i]) <= 1e-4 * Float(k), "m=\(m) n=\(n) k=\(k) \(transA) \(transB) at \(i)")
                }
            }
        }
    }

    @Test func sgemmRejectsMismatchedOperand() {
        var c = [Float](repeating: 0, count: 4)
        #expect(throws: BLASError.shapeMismatch(operand: "B", expected: 6, actual: 5)) {
            try BLAS.sgemm(m: 2, n: 2, k: 3, a: [Float](repeating: 1, count: 6), b: [Float](repeating: 1, count: 5), c: &c)
        }
    }

    @Test func threadCountIsSettable() {
        let before = BLAS.threads
        BLAS.setThreads(1)
        #expect(BLAS.threads == 1)
        BLAS.setThreads(before)
    }

    @Test func kernelsArePinnedUnlessTheUserChoseOrTheCPUCannot() {
        // OpenBLAS's own choices on an Emerald Rapids Xeon with Debian's 0.3.21 (Prescott) and
        // on other AVX-512 CPUs are replaced by the pinned kernels.
        #expect(BLAS.coreTypeOverride(coreName: "Prescott", cpuRunsPinned: true, userCoreType: nil) == "Haswell")
        #expect(BLAS.coreTypeOverride(coreName: "SkylakeX", cpuRunsPinned: true, userCoreType: nil) == "Haswell")
        // Already the pinned kernels (Zen uses Haswell's).
        #expect(BLAS.coreTypeOverride(coreName: "Haswell", cpuRunsPinned: true, userCoreType: nil) == nil)
        #expect(BLAS.coreTypeOverride(coreName: "Zen", cpuRunsPinned: true, userCoreType: nil) == nil)
        // A user's choice stands, and a CPU without AVX2 keeps what OpenBLAS chose.
        #expect(BLAS.coreTypeOverride(coreName: "Prescott", cpuRunsPinned: true, userCoreType: "SkylakeX") == nil)
        #expect(BLAS.coreTypeOverride(coreName: "Prescott", cpuRunsPinned: false, userCoreType: nil) == nil)
        #expect(!BLAS.coreName.isEmpty)
    }
}
