import ArgumentParser
import CHDF5
import Foundation
import Runtime
import Shared

// libhdf5's exit handler closes whatever files are still open in the library. A file whose close
// failed (a checkpoint write on a full disk, after a failed flush) stays half-closed there, and
// the handler then crashes (SIGSEGV in H5F__close_cb) instead of letting the process exit with
// its error: found by scripts/chaos.sh (disk-full). cerm closes its files itself, so the
// handler is not installed. Before any other HDF5 call: it has no effect once the library is up.
_ = H5dont_atexit()

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
