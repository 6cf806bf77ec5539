/// A ggml tensor type: its id in GGUF files, its name, and how many elements one block of
/// `typeSize` bytes holds (`ggml/src/ggml.c` `type_traits`, gguf-py `GGML_QUANT_SIZES`).
///
/// Every type ggml defines is known here, so a file holding any of them parses and its layout
/// is checked; ``GGUFFile/dequantize(_:into:)`` converts the ``dequantizable`` ones.
public struct GGMLType: Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt32
    public let name: String
    /// Elements per block (1 for plain floats and ints).
    public let blockSize: Int
    /// Bytes per block.
    public let typeSize: Int

    public var description: String { name }

    public static let f32 = GGMLType(rawValue: 0, name: "F32", blockSize: 1, typeSize: 4)
    public static let f16 = GGMLType(rawValue: 1, name: "F16", blockSize: 1, typeSize: 2)
    public static let q4_0 = GGMLType(rawValue: 2, name: "Q4_0", blockSize: 32, typeSize: 18)
    public static let q4_1 = GGMLType(rawValue: 3, name: "Q4_1", blockSize: 32, typeSize: 20)
    public static let q8_0 = GGMLType(rawValue: 8, name: "Q8_0", blockSize: 32, typeSize: 34)
    public static let q4_K = GGMLType(rawValue: 12, name: "Q4_K", blockSize: 256, typeSize: 144)
    public static let q5_K = GGMLType(rawValue: 13, name: "Q5_K", blockSize: 256, typeSize: 176)
    public static let q6_K = GGMLType(rawValue: 14, name: "Q6_K", blockSize: 256, typeSize: 210)
    public static let bf16 = GGMLType(rawValue: 30, name: "BF16", blockSize: 1, typeSize: 2)

    /// The types cerm converts to float32.
    public static let dequantizable: Set<GGMLType> = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q4_K, .q5_K, .q6_K]

    /// Every type ggml defines (ids 4 and 5, the removed Q4_2/Q4_3, and 31–33 are unused).
    public static let all: [GGMLType] = [
        .f32, .f16, .q4_0, .q4_1,
        GGMLType(rawValue: 6, name: "Q5_0", blockSize: 32, typeSize: 22),
        GGMLType(rawValue: 7, name: "Q5_1", blockSize: 32, typeSize: 24),
        .q8_0,
        GGMLType(rawValue: 9, name: "Q8_1", blockSize: 32, typeSize: 40),
        GGMLType(rawValue: 10, name: "Q2_K", blockSize: 256, typeSize: 84),
        GGMLType(rawValue: 11, name: "Q3_K", blockSize: 256, typeSize: 110),
        .q4_K, .q5_K, .q6_K,
        GGMLType(rawValue: 15, name: "Q8_K", blockSize: 256, typeSize: 292),
        GGMLType(rawValue: 16, name: "IQ2_XXS", blockSize: 256, typeSize: 66),
        GGMLType(rawValue: 17, name: "IQ2_XS", blockSize: 256, typeSize: 74),
        GGMLType(rawValue: 18, name: "IQ3_XXS", blockSize: 256, typeSize: 98),
        GGMLType(rawValue: 19, name: "IQ1_S", blockSize: 256, typeSize: 50),
        GGMLType(rawValue: 20, name: "IQ4_NL", blockSize: 32, typeSize: 18),
        GGMLType(rawValue: 21, name: "IQ3_S", blockSize: 256, typeSize: 110),
        GGMLType(rawValue: 22, name: "IQ2_S", blockSize: 256, typeSize: 82),
        GGMLType(rawValue: 23, name: "IQ4_XS", blockSize: 256, typeSize: 136),
        GGMLType(rawValue: 24, name: "I8", blockSize: 1, typeSize: 1),
        GGMLType(rawValue: 25, name: "I16", blockSize: 1, typeSize: 2),
        GGMLType(rawValue: 26, name: "I32", blockSize: 1, typeSize: 4),
        GGMLType(rawValue: 27, name: "I64", blockSize: 1, typeSize: 8),
        GGMLType(rawValue: 28, name: "F64", blockSize: 1, typeSize: 8),
        GGMLType(rawValue: 29, name: "IQ1_M", blockSize: 256, typeSize: 56),
        .bf16,
        GGMLType(rawValue: 34, name: "TQ1_0", blockSize: 256, typeSize: 54),
        GGMLType(rawValue: 35, name: "TQ2_0", blockSize: 256, typeSize: 66),
        GGMLType(rawValue: 39, name: "MXFP4", blockSize: 32, typeSize: 17),
        GGMLType(rawValue: 40, name: "NVFP4", blockSize: 64, typeSize: 36),
        GGMLType(rawValue: 41, name: "Q1_0", blockSize: 128, typeSize: 18),
    ]

    private static let byID: [UInt32: GGMLType] = Dictionary(uniqueKeysWithValues: all.map { ($0.rawValue, $0) })

    /// The type with GGUF id `rawValue`, or nil for an id ggml does not define.
    public init?(rawValue: UInt32) {
        guard let type = Self.byID[rawValue] else { return nil }
        self = type
    }

    private init(rawValue: UInt32, name: String, blockSize: Int, typeSize: Int) {
        self.rawValue = rawValue
        self.name = name
        self.blockSize = blockSize
        self.typeSize = typeSize
    }
}
