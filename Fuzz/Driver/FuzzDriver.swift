// The decoder fuzzer's executable (docs/FUZZING.md). Built by `make fuzz` with
// `-sanitize=fuzzer -DCERM_FUZZ`, it hands its arguments to libFuzzer, which calls
// LLVMFuzzerTestOneInput with each input it makes. Built plainly (as `swift build` does with every target), it replays
// inputs instead, so a crash file can be rerun without the sanitizer build:
//   cerm-fuzz-decoder FILE...            check each file; exit 1 at the first failure
//   cerm-fuzz-decoder --write-seeds DIR  write the seed corpus (one valid message per type)
import DecoderFuzzing
import Foundation

#if CERM_FUZZ
/// libFuzzer's entry for a program with its own `main` (SwiftPM links every executable's
/// `main` to the `@main` type below, so libFuzzer's own `main` cannot be used).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

/// One input: a property failure crashes, so that libFuzzer saves the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do {
        try DecoderFuzzing.check(input)
    } catch {
        fatalError("\(error)")
    }
    return 0
}

@main enum FuzzDriver {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzerTestOneInput))
    }
}
#else
@main enum FuzzDriver {
    static func main() throws {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.count == 2, arguments[0] == "--write-seeds" {
            let directory = URL(fileURLWithPath: arguments[1])
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let seeds = try DecoderFuzzing.seeds()
            for seed in seeds { try Data(seed.bytes).write(to: directory.appendingPathComponent(seed.name)) }
            print("wrote \(seeds.count) seeds to \(directory.path)")
            return
        }
        guard !arguments.isEmpty, !arguments.contains(where: { $0.hasPrefix("-") }) else {
            FileHandle.standardError.write(Data("usage: cerm-fuzz-decoder FILE... | --write-seeds DIR (libFuzzer's flags need the `make fuzz` build)\n".utf8))
            exit(2)
        }
        for path in arguments {
            guard let data = FileManager.default.contents(atPath: path) else {
                FileHandle.standardError.write(Data("cerm-fuzz-decoder: cannot read \(path)\n".utf8))
                exit(1)
            }
            do {
                let message = try DecoderFuzzing.check(Array(data))
                print("\(path): \(message.map { "decodes as \($0.type) and encodes back to the same bytes" } ?? "rejected")")
            } catch {
                print("\(path): FAIL: \(error)")
                exit(1)
            }
        }
    }
}
#endif
