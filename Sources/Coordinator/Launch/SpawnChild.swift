import CSystemShims
import Foundation

/// Starts `executable arguments…` with `posix_spawn`, an empty signal mask and default signal
/// dispositions, and returns its pid or the `errno` of the failure. A parent's Dispatch threads
/// block signals, and a blocked or ignored signal would otherwise be inherited: the child would
/// be deaf to SIGTERM, or would not die the way it crashed. `silenced` sends the child's stdin,
/// stdout and stderr to /dev/null instead of inheriting them; `stdout`, when given, becomes the
/// child's standard output instead (the write end of a pipe). The child inherits no other
/// descriptor: an HDF5 file open in the parent would otherwise stay open, and locked, for as long
/// as the child lives. `ownProcessGroup` puts the child in a new process group, so that Ctrl-C
/// at the terminal reaches only the parent, which decides what the child's end means.
func spawnChild(executable: String, arguments: [String], environment: [String: String],
                silenced: Bool = false, stdout: Int32? = nil, ownProcessGroup: Bool = false) -> Result<pid_t, SpawnError> {
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    posix_spawnattr_setsigmask(&attributes, &noSignals)
    var allSignals = sigset_t()
    sigfillset(&allSignals)
    posix_spawnattr_setsigdefault(&attributes, &allSignals)
    var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
    if ownProcessGroup {
        posix_spawnattr_setpgroup(&attributes, 0)
        flags |= POSIX_SPAWN_SETPGROUP
    }
    posix_spawnattr_setflags(&attributes, Int16(flags))

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    if silenced {
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        for descriptor in [STDOUT_FILENO, STDERR_FILENO] {
            posix_spawn_file_actions_addopen(&actions, descriptor, "/dev/null", O_WRONLY, 0)
        }
    }
    if let stdout { posix_spawn_file_actions_adddup2(&actions, stdout, STDOUT_FILENO) }
    // Where unsupported (glibc < 2.34) the child inherits them, as it would without this.
    _ = cerm_spawn_close_from(&actions, 3)

    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        argv.forEach { free($0) }
        envp.forEach { free($0) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
    return rc == 0 ? .success(pid) : .failure(SpawnError(code: rc))
}

/// Why ``spawnChild(executable:arguments:environment:silenced:stdout:ownProcessGroup:)`` failed: `posix_spawn`'s error.
struct SpawnError: Error, CustomStringConvertible {
    let code: Int32
    var description: String { String(cString: strerror(code)) }
}
