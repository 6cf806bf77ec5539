import CHDF5
import Foundation

/// An HDF5 failure: the operation, the object path, and the messages of HDF5's own error stack.
public struct HDF5Error: Error, Equatable, CustomStringConvertible {
    public let operation: String
    public let path: String
    public let stack: String

    init(_ operation: String, _ path: String) {
        self.operation = operation
        self.path = path
        var buf = [CChar](repeating: 0, count: 2048)
        let len = cerm_h5_error_message(&buf, buf.count)
        self.stack = len > 0 ? String(decoding: buf.prefix(len).map { UInt8(bitPattern: $0) }, as: UTF8.self) : "no HDF5 error message"
        H5Eclear2(cerm_H5E_DEFAULT())
    }

    public init(operation: String, path: String, stack: String) {
        self.operation = operation
        self.path = path
        self.stack = stack
    }

    public var description: String { "HDF5: \(operation) \(path): \(stack)" }
}

/// HDF5 element types cerm stores.
public protocol HDF5Scalar {
    static var hdf5Type: hid_t { get }
}
extension Float: HDF5Scalar { public static var hdf5Type: hid_t { cerm_H5T_NATIVE_FLOAT() } }
extension Double: HDF5Scalar { public static var hdf5Type: hid_t { cerm_H5T_NATIVE_DOUBLE() } }
extension Int64: HDF5Scalar { public static var hdf5Type: hid_t { cerm_H5T_NATIVE_INT64() } }
extension Int32: HDF5Scalar { public static var hdf5Type: hid_t { cerm_H5T_NATIVE_INT32() } }
extension UInt8: HDF5Scalar { public static var hdf5Type: hid_t { cerm_H5T_NATIVE_UINT8() } }
extension UInt64: HDF5Scalar { public static var hdf5Type: hid_t { cerm_H5T_NATIVE_UINT64() } }

/// Serialises access to the HDF5 library, which the Debian package builds without thread safety.
let hdf5Lock = NSRecursiveLock()

@inline(__always)
func withHDF5<T>(_ body: () throws -> T) rethrows -> T {
    hdf5Lock.lock(); defer { hdf5Lock.unlock() }
    // HDF5 keeps its auto-print setting per thread; errors become Swift errors instead.
    cerm_h5_silence_errors()
    return try body()
}

private let hdf5Initialised: Bool = {
    H5open()
    cerm_h5_silence_errors()
    return true
}()

/// An HDF5 file. Closed on `close()` or release. All HDF5 calls in the process are serialised.
public final class HDF5File: @unchecked Sendable {
    /// How to open a file.
    public enum Mode: Sendable { case readOnly, readWrite, truncate }

    let id: hid_t
    /// The file's path on disk.
    public let path: String
    private var open = true

    /// Opens (`readOnly`, `readWrite`) or creates, replacing any existing file (`truncate`).
    public init(path: String, mode: Mode) throws {
        _ = hdf5Initialised
        self.path = path
        let fid: hid_t = withHDF5 {
            switch mode {
            case .truncate: return H5Fcreate(path, cerm_H5F_ACC_TRUNC(), cerm_H5P_DEFAULT(), cerm_H5P_DEFAULT())
            case .readOnly: return H5Fopen(path, cerm_H5F_ACC_RDONLY(), cerm_H5P_DEFAULT())
            case .readWrite: return H5Fopen(path, cerm_H5F_ACC_RDWR(), cerm_H5P_DEFAULT())
            }
        }
        guard fid >= 0 else { throw withHDF5 { HDF5Error(mode == .truncate ? "create" : "open", path) } }
        id = fid
    }

    /// Whether `path` is a readable HDF5 file (by its signature).
    public static func isHDF5(path: String) -> Bool {
        _ = hdf5Initialised
        return withHDF5 { H5Fis_hdf5(path) > 0 }
    }

    /// The root group.
    public var root: HDF5Group { HDF5Group(file: self, path: "/") }

    /// Flushes buffered data to disk.
    public func flush() throws {
        try withHDF5 {
            if H5Fflush(id, H5F_SCOPE_GLOBAL) < 0 { throw HDF5Error("flush", path) }
        }
    }

    /// Closes the file; objects made from it must not be used afterwards.
    public func close() throws {
        guard open else { return }
        open = false
        try withHDF5 {
            if H5Fclose(id) < 0 { throw HDF5Error("close", path) }
        }
    }

    /// Closes a file whose writing failed and that the caller deletes next: its contents are
    /// truncated away first, so the close, which flushes HDF5's metadata, finds room even on a
    /// full disk. A close that fails leaves the file half-closed in the library, and its exit
    /// handler then crashes (SIGSEGV in `H5F__close_cb`) instead of the process exiting with
    /// its error: found by scripts/chaos.sh, a checkpoint write on a full tmpfs.
    public func abandon() {
        guard open else { return }
        _ = truncate(path, 0)
        try? close()
    }

    deinit { if open { withHDF5 { _ = H5Fclose(id) } } }
}

/// A group inside an ``HDF5File``, addressed by absolute path. Datasets and attributes are
/// created, read and overwritten through it.
public struct HDF5Group {
    public let file: HDF5File
    /// Absolute path of the group inside the file ("/" for the root).
    public let path: String

    func child(_ name: String) -> String { path == "/" ? "/" + name : path + "/" + name }

    private func where_(_ name: String) -> String { "\(file.path):\(child(name))" }

    /// Opens a subgroup, creating it (and missing parents) when `create` is true.
    public func group(_ name: String, create: Bool = false) throws -> HDF5Group {
        let full = child(name)
        return try withHDF5 {
            if H5Lexists(file.id, full, cerm_H5P_DEFAULT()) > 0 {
                let g = H5Gopen2(file.id, full, cerm_H5P_DEFAULT())
                guard g >= 0 else { throw HDF5Error("open group", where_(name)) }
                H5Gclose(g)
                return HDF5Group(file: file, path: full)
            }
            guard create else { throw HDF5Error(operation: "open group", path: where_(name), stack: "no such group") }
            let lcpl = H5Pcreate(cerm_H5P_LINK_CREATE())
            defer { H5Pclose(lcpl) }
            H5Pset_create_intermediate_group(lcpl, 1)
            let g = H5Gcreate2(file.id, full, lcpl, cerm_H5P_DEFAULT(), cerm_H5P_DEFAULT())
            guard g >= 0 else { throw HDF5Error("create group", where_(name)) }
            H5Gclose(g)
            return HDF5Group(file: file, path: full)
        }
    }

    /// Whether a link (dataset or group) named `name` exists in this group.
    public func contains(_ name: String) -> Bool {
        withHDF5 { H5Lexists(file.id, child(name), cerm_H5P_DEFAULT()) > 0 }
    }

    /// Names of the links in this group, in HDF5's name order.
    public func names() throws -> [String] {
        try withHDF5 {
            let g = H5Gopen2(file.id, path, cerm_H5P_DEFAULT())
            guard g >= 0 else { throw HDF5Error("open group", "\(file.path):\(path)") }
            defer { H5Gclose(g) }
            var info = H5G_info_t()
            guard H5Gget_info(g, &info) >= 0 else { throw HDF5Error("list", "\(file.path):\(path)") }
            var names: [String] = []
            for i in 0..<info.nlinks {
                let size = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, cerm_H5P_DEFAULT())
                guard size >= 0 else { throw HDF5Error("list", "\(file.path):\(path)") }
                var buf = [CChar](repeating: 0, count: Int(size) + 1)
                H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, buf.count, cerm_H5P_DEFAULT())
                names.append(String(nulTerminated: buf))
            }
            return names
        }
    }

    // MARK: Datasets

    /// Writes `values` as dataset `name` with `shape`, replacing an existing dataset of that name.
    public func write<T: HDF5Scalar>(_ name: String, _ values: [T], shape: [Int]) throws {
        try values.withUnsafeBufferPointer { try write(name, values: $0, shape: shape) }
    }

    /// Writes a contiguous buffer as dataset `name` with `shape` (overwrites an existing one).
    public func write<T: HDF5Scalar>(_ name: String, values: UnsafeBufferPointer<T>, shape: [Int]) throws {
        let count = shape.reduce(1, *)
        guard count == values.count else {
            throw HDF5Error(operation: "write", path: where_(name), stack: "shape \(shape) needs \(count) values, got \(values.count)")
        }
        let full = child(name)
        try withHDF5 {
            if H5Lexists(file.id, full, cerm_H5P_DEFAULT()) > 0 {
                if H5Ldelete(file.id, full, cerm_H5P_DEFAULT()) < 0 { throw HDF5Error("replace dataset", where_(name)) }
            }
            var dims = shape.map { hsize_t($0) }
            let space = H5Screate_simple(Int32(dims.count), &dims, nil)
            guard space >= 0 else { throw HDF5Error("create dataspace", where_(name)) }
            defer { H5Sclose(space) }
            let lcpl = H5Pcreate(cerm_H5P_LINK_CREATE())
            defer { H5Pclose(lcpl) }
            H5Pset_create_intermediate_group(lcpl, 1)
            let ds = H5Dcreate2(file.id, full, T.hdf5Type, space, lcpl, cerm_H5P_DEFAULT(), cerm_H5P_DEFAULT())
            guard ds >= 0 else { throw HDF5Error("create dataset", where_(name)) }
            defer { H5Dclose(ds) }
            if count > 0, H5Dwrite(ds, T.hdf5Type, cerm_H5S_ALL(), cerm_H5S_ALL(), cerm_H5P_DEFAULT(), values.baseAddress) < 0 {
                throw HDF5Error("write dataset", where_(name))
            }
        }
    }

    /// The shape of dataset `name`.
    public func shape(of name: String) throws -> [Int] {
        try withHDF5 {
            let ds = H5Dopen2(file.id, child(name), cerm_H5P_DEFAULT())
            guard ds >= 0 else { throw HDF5Error("open dataset", where_(name)) }
            defer { H5Dclose(ds) }
            return try Self.dims(ds, where_(name))
        }
    }

    /// HDF5's limit on the rank of a dataspace (`H5S_MAX_RANK`).
    static let maxRank = 32

    private static func dims(_ ds: hid_t, _ at: String) throws -> [Int] {
        let space = H5Dget_space(ds)
        guard space >= 0 else { throw HDF5Error("get dataspace", at) }
        defer { H5Sclose(space) }
        let rank = H5Sget_simple_extent_ndims(space)
        guard rank >= 0 else { throw HDF5Error("get rank", at) }
        guard rank <= maxRank else {
            throw HDF5Error(operation: "get rank", path: at, stack: "dataspace rank \(rank) exceeds \(maxRank) (corrupt file?)")
        }
        var dims = [hsize_t](repeating: 0, count: Int(rank))
        guard H5Sget_simple_extent_dims(space, &dims, nil) >= 0 else { throw HDF5Error("get dimensions", at) }
        guard let tooLarge = dims.first(where: { $0 > hsize_t(Int.max) }) else { return dims.map { Int($0) } }
        throw HDF5Error(operation: "get dimensions", path: at, stack: "dimension \(tooLarge) is out of range (corrupt file?)")
    }

    /// The number of values of dataset `ds` with `shape`, checked before anything is allocated
    /// for them: the product must not overflow, and unless the dataset is chunked (whose
    /// storage may be compressed) its bytes in the stored type must be on disk — at most the
    /// dataset's storage size and the file's size. A corrupted dataspace dimension is an error
    /// here instead of an allocation of terabytes.
    private func checkedCount(_ ds: hid_t, shape: [Int], _ at: String) throws -> Int {
        var count = 1
        for dimension in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow else {
                throw HDF5Error(operation: "read", path: at, stack: "shape \(shape) overflows the value count (corrupt file?)")
            }
            count = product
        }
        guard count > 0 else { return count }
        let type = H5Dget_type(ds)
        guard type >= 0 else { throw HDF5Error("get type", at) }
        defer { H5Tclose(type) }
        let elementSize = H5Tget_size(type)
        guard elementSize > 0 else { throw HDF5Error("get type size", at) }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: elementSize)
        guard !overflow else {
            throw HDF5Error(operation: "read", path: at, stack: "shape \(shape) of \(elementSize)-byte values overflows (corrupt file?)")
        }
        let plist = H5Dget_create_plist(ds)
        guard plist >= 0 else { throw HDF5Error("get creation properties", at) }
        let layout = H5Pget_layout(plist)
        H5Pclose(plist)
        guard layout != H5D_CHUNKED else { return count }
        let storage = H5Dget_storage_size(ds)
        var fileSize: hsize_t = 0
        guard H5Fget_filesize(file.id, &fileSize) >= 0 else { throw HDF5Error("get file size", at) }
        let available = min(storage, fileSize)
        guard hsize_t(bytes) <= available else {
            throw HDF5Error(operation: "read", path: at, stack: "shape \(shape) needs \(bytes) bytes but the dataset stores \(storage) bytes in a file of \(fileSize) (corrupt file?)")
        }
        return count
    }

    /// Reads dataset `name` as `T` (HDF5 converts from the stored type), with its shape.
    public func read<T: HDF5Scalar>(_ name: String, as: T.Type = T.self) throws -> (values: [T], shape: [Int]) {
        try withHDF5 {
            let ds = H5Dopen2(file.id, child(name), cerm_H5P_DEFAULT())
            guard ds >= 0 else { throw HDF5Error("open dataset", where_(name)) }
            defer { H5Dclose(ds) }
            let shape = try Self.dims(ds, where_(name))
            let count = try checkedCount(ds, shape: shape, where_(name))
            var values = [T](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
            if count > 0 {
                let rc = values.withUnsafeMutableBytes {
                    H5Dread(ds, T.hdf5Type, cerm_H5S_ALL(), cerm_H5S_ALL(), cerm_H5P_DEFAULT(), $0.baseAddress)
                }
                if rc < 0 { throw HDF5Error("read dataset", where_(name)) }
            }
            return (values, shape)
        }
    }

    /// Reads dataset `name` into `destination`, whose size must equal the dataset's.
    public func read<T: HDF5Scalar>(_ name: String, into destination: UnsafeMutableBufferPointer<T>) throws {
        try withHDF5 {
            let ds = H5Dopen2(file.id, child(name), cerm_H5P_DEFAULT())
            guard ds >= 0 else { throw HDF5Error("open dataset", where_(name)) }
            defer { H5Dclose(ds) }
            let count = try checkedCount(ds, shape: Self.dims(ds, where_(name)), where_(name))
            guard count == destination.count else {
                throw HDF5Error(operation: "read", path: where_(name), stack: "dataset has \(count) values, destination \(destination.count)")
            }
            if count > 0, H5Dread(ds, T.hdf5Type, cerm_H5S_ALL(), cerm_H5S_ALL(), cerm_H5P_DEFAULT(), destination.baseAddress) < 0 {
                throw HDF5Error("read dataset", where_(name))
            }
        }
    }

    /// Writes a UTF-8 string as a 1-D UInt8 dataset (lossless for any length and content).
    public func writeText(_ name: String, _ text: String) throws {
        let bytes = Array(text.utf8)
        try write(name, bytes, shape: [bytes.count])
    }

    /// Reads a dataset written by ``writeText(_:_:)``; invalid UTF-8 is an error naming the dataset.
    public func readText(_ name: String) throws -> String {
        let bytes: [UInt8] = try read(name).values
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw HDF5Error(operation: "read text", path: where_(name), stack: "not valid UTF-8")
        }
        return s
    }

    // MARK: Attributes

    private func withObject<R>(_ operation: String, _ body: (hid_t) throws -> R) throws -> R {
        try withHDF5 {
            let obj = H5Oopen(file.id, path, cerm_H5P_DEFAULT())
            guard obj >= 0 else { throw HDF5Error(operation, "\(file.path):\(path)") }
            defer { H5Oclose(obj) }
            return try body(obj)
        }
    }

    private func deleteAttributeIfPresent(_ obj: hid_t, _ name: String) throws {
        let exists = H5Aexists(obj, name)
        if exists < 0 { throw HDF5Error("check attribute", "\(file.path):\(path)@\(name)") }
        if exists > 0, H5Adelete(obj, name) < 0 { throw HDF5Error("replace attribute", "\(file.path):\(path)@\(name)") }
    }

    /// Sets numeric attribute `name` (a 1-D array; scalars are arrays of one), overwriting.
    public func setAttribute<T: HDF5Scalar>(_ name: String, _ values: [T]) throws {
        let at = "\(file.path):\(path)@\(name)"
        try withObject("set attribute") { obj in
            try deleteAttributeIfPresent(obj, name)
            var dims = [hsize_t(values.count)]
            let space = H5Screate_simple(1, &dims, nil)
            guard space >= 0 else { throw HDF5Error("create dataspace", at) }
            defer { H5Sclose(space) }
            let attr = H5Acreate2(obj, name, T.hdf5Type, space, cerm_H5P_DEFAULT(), cerm_H5P_DEFAULT())
            guard attr >= 0 else { throw HDF5Error("create attribute", at) }
            defer { H5Aclose(attr) }
            let rc = values.withUnsafeBytes { H5Awrite(attr, T.hdf5Type, $0.baseAddress) }
            if rc < 0 { throw HDF5Error("write attribute", at) }
        }
    }

    /// Sets a single-value numeric attribute.
    public func setAttribute<T: HDF5Scalar>(_ name: String, _ value: T) throws { try setAttribute(name, [value]) }

    /// Reads numeric attribute `name` as `T`.
    public func attribute<T: HDF5Scalar>(_ name: String, as: T.Type = T.self) throws -> [T] {
        let at = "\(file.path):\(path)@\(name)"
        return try withObject("read attribute") { obj in
            let attr = H5Aopen(obj, name, cerm_H5P_DEFAULT())
            guard attr >= 0 else { throw HDF5Error("open attribute", at) }
            defer { H5Aclose(attr) }
            let space = H5Aget_space(attr)
            defer { H5Sclose(space) }
            let n = Int(H5Sget_simple_extent_npoints(space))
            guard n >= 0 else { throw HDF5Error("attribute size", at) }
            // A corrupted dataspace must not make us allocate what the attribute does not hold.
            // Every stored value takes at least one byte.
            let stored = H5Aget_storage_size(attr)
            guard hsize_t(n) <= stored, !n.multipliedReportingOverflow(by: MemoryLayout<T>.stride).overflow else {
                throw HDF5Error(operation: "read attribute", path: at, stack: "dataspace of \(n) values but \(stored) bytes stored (corrupt file?)")
            }
            var values = [T](unsafeUninitializedCapacity: n) { _, c in c = n }
            let rc = values.withUnsafeMutableBytes { H5Aread(attr, T.hdf5Type, $0.baseAddress) }
            if rc < 0 { throw HDF5Error("read attribute", at) }
            return values
        }
    }

    /// Sets a variable-length UTF-8 string attribute (readable by h5py as `str`).
    public func setAttribute(_ name: String, _ value: String) throws {
        let at = "\(file.path):\(path)@\(name)"
        try withObject("set attribute") { obj in
            try deleteAttributeIfPresent(obj, name)
            let type = H5Tcopy(cerm_H5T_C_S1())
            defer { H5Tclose(type) }
            H5Tset_size(type, cerm_H5T_VARIABLE())
            H5Tset_cset(type, H5T_CSET_UTF8)
            let space = H5Screate(H5S_SCALAR)
            defer { H5Sclose(space) }
            let attr = H5Acreate2(obj, name, type, space, cerm_H5P_DEFAULT(), cerm_H5P_DEFAULT())
            guard attr >= 0 else { throw HDF5Error("create attribute", at) }
            defer { H5Aclose(attr) }
            let rc: herr_t = value.withCString { cstr in
                var ptr: UnsafePointer<CChar>? = cstr
                return H5Awrite(attr, type, &ptr)
            }
            if rc < 0 { throw HDF5Error("write attribute", at) }
        }
    }

    /// Reads a string attribute (variable or fixed length).
    public func stringAttribute(_ name: String) throws -> String {
        let at = "\(file.path):\(path)@\(name)"
        return try withObject("read attribute") { obj in
            let attr = H5Aopen(obj, name, cerm_H5P_DEFAULT())
            guard attr >= 0 else { throw HDF5Error("open attribute", at) }
            defer { H5Aclose(attr) }
            let stored = H5Aget_type(attr)
            defer { H5Tclose(stored) }
            guard H5Tget_class(stored) == H5T_STRING else {
                throw HDF5Error(operation: "read attribute", path: at, stack: "not a string attribute")
            }
            if H5Tis_variable_str(stored) > 0 {
                let mem = H5Tcopy(cerm_H5T_C_S1())
                defer { H5Tclose(mem) }
                H5Tset_size(mem, cerm_H5T_VARIABLE())
                H5Tset_cset(mem, H5T_CSET_UTF8)
                var ptr: UnsafeMutablePointer<CChar>? = nil
                if H5Aread(attr, mem, &ptr) < 0 { throw HDF5Error("read attribute", at) }
                defer { if let p = ptr { H5free_memory(p) } }
                return ptr.map { String(cString: $0) } ?? ""
            }
            let size = H5Tget_size(stored)
            var buf = [CChar](repeating: 0, count: size + 1)
            if H5Aread(attr, stored, &buf) < 0 { throw HDF5Error("read attribute", at) }
            return String(nulTerminated: buf)
        }
    }

    /// Whether attribute `name` exists on this group.
    public func hasAttribute(_ name: String) -> Bool {
        (try? withObject("check attribute") { H5Aexists($0, name) > 0 }) ?? false
    }
}
