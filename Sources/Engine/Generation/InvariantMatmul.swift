import CKernels
import Dispatch
import Shared

/// The engine's batch-invariant matrix product `C[m, n] (+)= A[m, k] · Bᵀ` (`B` stored `[n, k]`,
/// the Hugging Face `[out, in]` weight layout), used for every projection of the inference path.
///
/// Why not OpenBLAS: `sgemm` gives a row different bits depending on the number of rows in the
/// call and on the row's position among them (measured on OpenBLAS 0.3.21, every shape the
/// engine uses, 1 and 2 threads), so tokens would
/// depend on which sequences share a batch. Here each element is one dot product in a fixed order
/// that depends only on `k` (16 fused-multiply-add lanes, a fixed reduction tree, a sequential
/// tail; see `Sources/CKernels/include/cerm_rowgemm.h`), computed by AVX-512, AVX2+FMA or portable code
/// with identical bits. Columns are split across threads, which cannot change any element.
public enum InvariantMatmul {
    /// Which kernel runs on this machine: 2 = AVX-512F, 1 = AVX2+FMA, 0 = portable scalar.
    public static var kernelVariant: Int { Int(cerm_rowgemm_variant()) }

    /// Threads used for large products and for attention rows: ``threadOverride`` if set, else
    /// OpenBLAS's thread count (`BLAS.setThreads`), so one knob sizes both. Results never depend
    /// on it (columns and rows are split, never a reduction).
    public static var threads: Int { max(1, threadOverride ?? BLAS.threads) }

    /// Overrides ``threads``. Set it once at start-up, not while a generator is running.
    nonisolated(unsafe) public static var threadOverride: Int?

    /// `c[i, j] = (accumulate ? c[i, j] : 0) + Σ_p a[i, p] · b[j, p]`, row-major with leading
    /// dimensions `lda`, `ldb`, `ldc`. `requested` overrides ``threads``; `forceVariant` (tests only)
    /// picks a slower kernel.
    @inline(__always)
    public static func multiply(
        m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, threads requested: Int? = nil, forceVariant: Int = -1
    ) {
        if m == 0 || n == 0 { return }
        let parts = (m * n * k >= 1 << 18) ? max(1, min(requested ?? threads, n / 16)) : 1
        if parts == 1 {
            cerm_rowgemm_columns(Int32(m), 0, Int32(n), Int32(k), a, Int32(lda), b, Int32(ldb), c, Int32(ldc),
                                 accumulate ? 1 : 0, Int32(forceVariant))
            return
        }
        // Column ranges aligned to 4 so each part runs full tiles.
        let chunk = ((n + parts - 1) / parts + 3) / 4 * 4
        // Addresses cross into the worker closure as integers: the parts write disjoint columns.
        let aAddress = UInt(bitPattern: a), bAddress = UInt(bitPattern: b), cAddress = UInt(bitPattern: c)
        ParallelParts.run(parts) { part in
            let start = min(n, part * chunk), end = min(n, start + chunk)
            if start < end, let a = UnsafePointer<Float>(bitPattern: aAddress),
               let b = UnsafePointer<Float>(bitPattern: bAddress), let c = UnsafeMutablePointer<Float>(bitPattern: cAddress) {
                cerm_rowgemm_columns(Int32(m), Int32(start), Int32(end), Int32(k), a, Int32(lda), b, Int32(ldb), c,
                                     Int32(ldc), accumulate ? 1 : 0, Int32(forceVariant))
            }
        }
    }
}
