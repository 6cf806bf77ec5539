// swift-tools-version: 6.0
// cerm: a distributed trainer for generative reward models (CE-RM) on ZeroMQ, HDF5 and OpenBLAS.
import PackageDescription

let package = Package(
    name: "cerm",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "cerm", targets: ["cerm"]),
        // The message decoder's fuzzer (docs/FUZZING.md): `make fuzz` builds it with libFuzzer.
        .executable(name: "cerm-fuzz-decoder", targets: ["cerm-fuzz-decoder"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // C shims: one system-library target per C library, found with pkg-config.
        .systemLibrary(
            name: "CZeroMQ", pkgConfig: "libzmq",
            providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(
            name: "CHDF5", pkgConfig: "hdf5",
            providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(
            name: "COpenBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        // Process-level calls Swift's Glibc module lacks (prctl).
        .target(name: "CSystemShims"),
        // Batch-invariant matrix kernels (AVX-512 / AVX2 / scalar with identical bits) for the
        // inference path (OpenBLAS's sgemm rounds a row differently depending on the batch), and
        // the spinning helper threads that run their parallel parts.
        .target(name: "CKernels"),

        // Shared: the small core: errors, checksums, seeded RNG, JSON, BLAS/HDF5 wrappers, model families, token ids, finish reasons.
        .target(name: "Shared", dependencies: ["CHDF5", "COpenBLAS"]),
        // Runtime: process plumbing: logging, clocks, stop and parent-death signals, warning limits.
        .target(
            name: "Runtime",
            dependencies: ["Shared", "CSystemShims", .product(name: "Logging", package: "swift-log")]),
        // Configuration: the run's TOML configuration, its schema and checks, endpoint security.
        .target(
            name: "Configuration",
            dependencies: ["Shared", .product(name: "TOMLKit", package: "TOMLKit")]),
        // Tokenizers: byte-level BPE as Hugging Face tokenizers computes it, and chat templates.
        .target(name: "Tokenizers", dependencies: ["Shared"]),
        // Method: CE-RM itself, no I/O: prompt formats and parsers, rollout plan, rewards, advantages, GRPO loss.
        .target(name: "Method", dependencies: ["Shared", "Configuration", "Tokenizers"]),
        // Datasets: preference-data loaders, JSON lines, the synthetic task and its teacher.
        .target(name: "Datasets", dependencies: ["Shared", "Configuration", "Method"]),
        // WireProtocol: ZeroMQ, CURVE, the messages and their codec, channels, weight transfer.
        .target(
            name: "WireProtocol",
            dependencies: ["Shared", "Runtime", "Configuration", "Method", "CZeroMQ",
                           .product(name: "Logging", package: "swift-log")]),
        // Engine: the Llama/Qwen-family transformer (forward, backward, generation, AdamW).
        .target(name: "Engine", dependencies: ["Shared", "COpenBLAS", "CKernels"]),
        // PolicyGradient: one data shard's GRPO gradient on the engine, computed alike by the learner and by workers.
        .target(name: "PolicyGradient", dependencies: ["Shared", "Engine", "Method"]),
        // ModelFormats: model files of other tools (GGUF, safetensors, Hugging Face directories) in and out.
        .target(name: "ModelFormats", dependencies: ["Shared", "Engine", "Tokenizers"]),
        // EngineConfiguration: the run's model (own or pretrained), its chat codec and initial weights from a run's configuration.
        .target(name: "EngineConfiguration", dependencies: ["Shared", "Engine", "Configuration", "Method", "ModelFormats", "Tokenizers"]),
        // Coordinator: a run, scheduling, result acceptance, the GRPO learner, SFT, evaluation, checkpoints, pipeline.
        .target(
            name: "Coordinator",
            dependencies: ["Shared", "Runtime", "Configuration", "Method", "Datasets", "WireProtocol",
                           "Engine", "EngineConfiguration", "PolicyGradient", "ModelFormats", "Tokenizers", "CSystemShims",
                           .product(name: "Logging", package: "swift-log")]),
        // Worker: two-stage rollout and gradient tasks on the engine, weight fetching, reconnects.
        .target(
            name: "Worker",
            dependencies: ["Shared", "Runtime", "Configuration", "Method", "WireProtocol", "Engine", "EngineConfiguration",
                           "PolicyGradient", .product(name: "Logging", package: "swift-log")]),
        // The one executable with subcommands.
        .executableTarget(
            name: "cerm",
            dependencies: [
                "Shared", "Runtime", "Configuration", "Method", "Datasets", "WireProtocol",
                "Engine", "EngineConfiguration", "ModelFormats", "Coordinator", "Worker", "Tokenizers",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),

        // The decoder fuzzer's property and seed corpus (docs/FUZZING.md), and its executable:
        // libFuzzer's target under `make fuzz`, a replayer of saved inputs otherwise.
        .target(name: "DecoderFuzzing", dependencies: ["WireProtocol", "Method", "Configuration", "Shared"], path: "Fuzz/DecoderFuzzing"),
        .executableTarget(name: "cerm-fuzz-decoder", dependencies: ["DecoderFuzzing"], path: "Fuzz/Driver"),

        // Helpers the test targets share (temporary files, the `cerm` binary, free ports, tiny runs).
        .target(name: "TestSupport", dependencies: ["Shared"], path: "Tests/TestSupport"),
        // Tests, one target per module.
        .testTarget(name: "SharedTests", dependencies: ["TestSupport", "Shared"]),
        .testTarget(name: "RuntimeTests", dependencies: ["TestSupport", "Runtime", "Shared", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "ConfigurationTests", dependencies: ["Configuration", "Shared"]),
        .testTarget(name: "MethodTests", dependencies: ["TestSupport", "Method", "Configuration", "Shared", "Tokenizers", "ModelFormats"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "Method", "Configuration", "Shared"]),
        .testTarget(name: "WireProtocolTests", dependencies: ["TestSupport", "WireProtocol", "DecoderFuzzing", "Method", "Configuration", "Runtime", "Shared"]),
        .testTarget(name: "ModelFormatsTests", dependencies: ["ModelFormats", "Engine", "Shared"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TokenizersTests", dependencies: ["TestSupport", "Tokenizers", "ModelFormats", "Shared"], exclude: ["Fixtures"]),
        .testTarget(
            name: "EngineTests", dependencies: ["TestSupport", "Engine", "EngineConfiguration", "Configuration", "Shared", "CKernels"],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "CoordinatorTests",
            dependencies: ["TestSupport", "Coordinator", "Worker", "Engine", "EngineConfiguration", "PolicyGradient", "Shared", "Runtime", "Configuration",
                           "Method", "Datasets", "WireProtocol", "ModelFormats", "Tokenizers", .product(name: "Logging", package: "swift-log")]),
        .testTarget(
            name: "WorkerTests",
            dependencies: ["Worker", "Engine", "Shared", "Runtime", "Configuration", "Method", "WireProtocol",
                           .product(name: "Logging", package: "swift-log")]),
    ],
    swiftLanguageModes: [.v6]
)
