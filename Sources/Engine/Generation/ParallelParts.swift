import CKernels

/// The inference path's parallel parts: `body(part)` for every part in `0..<parts`, part 0 on
/// the calling thread, the others on helper threads that spin briefly between calls instead of
/// sleeping (`Sources/CKernels/include/cerm_pool.h` says why: a sleeping Dispatch worker took
/// 30-40 µs to wake, ~10% of a 2-thread decode step). Returns when every part is done. Parts
/// must write disjoint memory; the split never changes a result.
enum ParallelParts {
    static func run(_ parts: Int, _ body: (Int) -> Void) {
        guard parts > 1 else {
            if parts == 1 { body(0) }
            return
        }
        withoutActuallyEscaping(body) { body in
            withUnsafePointer(to: body) { pointer in
                cerm_pool_run(parts, { context, part in
                    context?.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(part))
                }, UnsafeMutableRawPointer(mutating: pointer))
            }
        }
    }

    /// Helper threads started so far.
    static var helpers: Int { cerm_pool_helpers() }
}
