import ArgumentParser
import Foundation
import Shared

// OpenBLAS picks its kernels once, when it is loaded. On a CPU it does not know (Debian 12's
// 0.3.21 on Sapphire/Emerald Rapids) it falls back to generic SSE3 kernels, 4-5x slower at
// sgemm; restart once with the right OPENBLAS_CORETYPE (children inherit it). A core type set
// by the user is left alone.
if let coreType = BLAS.coreTypeOverrideForThisCPU {
    setenv("OPENBLAS_CORETYPE", coreType, 1)
    execv("/proc/self/exe", CommandLine.unsafeArgv)
    // execv returns only on failure: go on with the generic kernels, and do not hand the
    // override to children, whose kernels would then differ from ours.
    unsetenv("OPENBLAS_CORETYPE")
    FileHandle.standardError.write(Data("warning: OpenBLAS runs its generic kernels on this CPU and restarting with OPENBLAS_CORETYPE=\(coreType) failed (errno \(errno)); set it yourself for 4-5x faster matrix products\n".utf8))
}
CermLogging.bootstrap()
Cerm.main()
