import Foundation
import Shared

extension BLAS {
    /// ``coreTypeOverride(coreName:cpuRunsPinned:userCoreType:)`` for this process and CPU: the
    /// CPU runs the pinned `Haswell` kernels when it has AVX2 and FMA, which is what the
    /// inference kernels' CPUID check (``InvariantMatmul/kernelVariant`` ≥ 1) establishes.
    public static var coreTypeOverrideForThisCPU: String? {
        coreTypeOverride(coreName: coreName, cpuRunsPinned: InvariantMatmul.kernelVariant >= 1,
                         userCoreType: ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"])
    }
}
