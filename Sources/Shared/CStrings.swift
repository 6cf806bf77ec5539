// Text from the C libraries (libzmq, HDF5).

extension String {
    /// The UTF-8 text of a C character buffer up to its first NUL (all of it when there is none).
    public init(nulTerminated buffer: [CChar]) {
        self = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
