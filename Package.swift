// swift-tools-version: 6.0
// cerm: a distributed trainer for generative reward models (CE-RM) on ZeroMQ, HDF5 and OpenBLAS.
import PackageDescription

let package = Package(
    name: "cerm",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "cerm", targets: ["cerm"]),
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
        // inference path: OpenBLAS's sgemm rounds a row differently depending on the batch.
        .target(name: "CKernels"),

        // Shared: config, logging, safe wrappers over the C libraries, the CE-RM method
        // (formats, rewards, GRPO), the wire protocol and data formats.
        .target(
            name: "Shared",
            dependencies: [
                "CZeroMQ", "CHDF5", "COpenBLAS", "CSystemShims",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]),
        // Engine: the Llama/Qwen-family transformer (forward, backward, generation, AdamW).
        .target(name: "Engine", dependencies: ["Shared", "COpenBLAS", "CKernels"]),
        // Coordinator: scheduler, learner (GRPO), checkpoints, monitoring.
        .target(name: "Coordinator", dependencies: ["Shared", "Engine", "ModelFormats", "CSystemShims"]),
        // ModelFormats: reads and writes model files of other tools (GGUF, safetensors, Hugging
        // Face directories) as cerm weights.
        .target(name: "ModelFormats", dependencies: ["Shared", "Engine"]),
        // Worker: two-stage rollout on the engine, weight fetching, reconnects.
        .target(name: "Worker", dependencies: ["Shared", "Engine"]),
        // The one executable with subcommands.
        .executableTarget(
            name: "cerm",
            dependencies: [
                "Shared", "Engine", "ModelFormats", "Coordinator", "Worker",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),

        .testTarget(name: "SharedTests", dependencies: ["Shared"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Shared", "CKernels"], resources: [.copy("Fixtures")]),
        .testTarget(name: "CoordinatorTests", dependencies: ["Coordinator", "Worker", "Engine", "ModelFormats", "Shared"]),
        .testTarget(name: "ModelFormatsTests", dependencies: ["ModelFormats", "Engine", "Shared"], resources: [.copy("Fixtures")]),
        .testTarget(name: "WorkerTests", dependencies: ["Worker", "Engine", "Shared"]),
    ],
    swiftLanguageModes: [.v6]
)
