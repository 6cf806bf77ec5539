import ArgumentParser
import Foundation
import Runtime
import Shared

// OpenBLAS picks its kernels once, when it is loaded, and different kernels round differently:
// enough to change what a training run converges to. Restart once with the pinned
// OPENBLAS_CORETYPE (BLAS.pinnedCoreType) so every x86-64 machine computes the same bits;
// children inherit it. A core type set by the user is left alone.
if let coreType = BLAS.coreTypeOverrideForThisCPU {
    setenv("OPENBLAS_CORETYPE", coreType, 1)
    execv("/proc/self/exe", CommandLine.unsafeArgv)
    // execv returns only on failure: go on with OpenBLAS's own choice, and do not hand the
    // override to children, whose kernels would then differ from ours.
    unsetenv("OPENBLAS_CORETYPE")
    FileHandle.standardError.write(Data("warning: restarting with OPENBLAS_CORETYPE=\(coreType) failed (errno \(errno)); OpenBLAS runs its \(BLAS.coreName) kernels, so results will not match other machines bit for bit\n".utf8))
}
CermLogging.bootstrap()
Cerm.main()
