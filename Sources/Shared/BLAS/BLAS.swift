import COpenBLAS

/// Errors from the array-level BLAS entry points.
public enum BLASError: Error, Equatable, CustomStringConvertible {
    /// An operand's element count does not match the shape it was declared with.
    case shapeMismatch(operand: String, expected: Int, actual: Int)

    public var description: String {
        switch self {
        case let .shapeMismatch(operand, expected, actual):
            return "BLAS: operand \(operand) has \(actual) elements, the shape needs \(expected)"
        }
    }
}

/// Thin, row-major view of OpenBLAS.
///
/// Every matrix is row-major; `transA`/`transB` say whether the stored matrix is used as is or
/// transposed, exactly as in `cblas_sgemm(CblasRowMajor, ...)`.
public enum BLAS {
    /// Whether an operand is used as stored or transposed.
    public enum Transpose: Sendable {
        case none, transpose
        @usableFromInline var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
    }

    /// Number of threads OpenBLAS uses for each call. Workers sharing a machine should each use
    /// one thread so that they do not oversubscribe the cores.
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// Sets the OpenBLAS thread count (clamped to at least 1).
    public static func setThreads(_ count: Int) { openblas_set_num_threads(Int32(max(1, count))) }

    /// The kernel set OpenBLAS chose for this CPU (`Haswell`, `Zen`, `SkylakeX`, … or
    /// `Prescott`, its generic fallback for CPUs it does not know).
    public static var coreName: String { openblas_get_corename().map { String(cString: $0) } ?? "unknown" }

    /// The core type cerm pins on x86-64: `Haswell` (AVX2 + FMA). OpenBLAS's kernels round
    /// differently per core type, and training is chaotic enough that a different rounding is
    /// a different model (BENCHMARKS.md, "OpenBLAS kernels": 73.8% vs 63.7% after the same SFT). With one kernel
    /// set on every machine, the same config gives the same weights on an AMD EPYC and an
    /// Intel Xeon. `Zen` uses the same kernels.
    public static let pinnedCoreType = "Haswell"

    /// The `OPENBLAS_CORETYPE` to restart with, or nil to keep the current kernels: the pinned
    /// core type when OpenBLAS chose another one (`coreName`) on a CPU that runs it
    /// (`cpuRunsPinned`, from CPUID), unless the user chose a core type themselves
    /// (`userCoreType`, the variable's current value). OpenBLAS reads the variable once, when it
    /// is loaded, so it takes a new process image to apply.
    public static func coreTypeOverride(coreName: String, cpuRunsPinned: Bool, userCoreType: String?) -> String? {
        guard userCoreType == nil, cpuRunsPinned, !["haswell", "zen"].contains(coreName.lowercased()) else { return nil }
        return pinnedCoreType
    }

    /// `C[m×n] = alpha · op(A)[m×k] · op(B)[k×n] + beta · C` on raw row-major buffers.
    ///
    /// `lda`, `ldb`, `ldc` are the row strides of the *stored* matrices (for a stored `A` of
    /// shape m×k that is k when not transposed; for a stored k×m it is m when transposed).
    @inlinable
    public static func sgemm(
        transA: Transpose = .none, transB: Transpose = .none,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        cblas_sgemm(
            CblasRowMajor, transA.cblas, transB.cblas,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Array form of ``sgemm(transA:transB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)`` with densely
    /// packed operands; checks every operand's size against the shape.
    public static func sgemm(
        transA: Transpose = .none, transB: Transpose = .none,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: [Float], b: [Float], beta: Float = 0, c: inout [Float]
    ) throws {
        guard a.count == m * k else { throw BLASError.shapeMismatch(operand: "A", expected: m * k, actual: a.count) }
        guard b.count == k * n else { throw BLASError.shapeMismatch(operand: "B", expected: k * n, actual: b.count) }
        guard c.count == m * n else { throw BLASError.shapeMismatch(operand: "C", expected: m * n, actual: c.count) }
        let lda = transA == .none ? k : m
        let ldb = transB == .none ? n : k
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                          a: pa.baseAddress!, lda: lda, b: pb.baseAddress!, ldb: ldb,
                          beta: beta, c: pc.baseAddress!, ldc: n)
                }
            }
        }
    }

    /// Naive triple-loop reference of the array `sgemm`, for tests.
    public static func referenceSgemm(
        transA: Transpose = .none, transB: Transpose = .none,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: [Float], b: [Float], beta: Float = 0, c: inout [Float]
    ) {
        for i in 0..<m {
            for j in 0..<n {
                var sum: Double = 0
                for p in 0..<k {
                    let av = transA == .none ? a[i * k + p] : a[p * m + i]
                    let bv = transB == .none ? b[p * n + j] : b[j * k + p]
                    sum += Double(av) * Double(bv)
                }
                c[i * n + j] = alpha * Float(sum) + (beta == 0 ? 0 : beta * c[i * n + j])
            }
        }
    }

    /// `y += alpha · x` over `n` contiguous elements.
    @inlinable
    public static func saxpy(n: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        cblas_saxpy(Int32(n), alpha, x, 1, y, 1)
    }

    /// Dot product of `n` contiguous elements.
    @inlinable
    public static func sdot(n: Int, x: UnsafePointer<Float>, y: UnsafePointer<Float>) -> Float {
        cblas_sdot(Int32(n), x, 1, y, 1)
    }
}
