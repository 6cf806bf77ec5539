import Shared

/// Whether an endpoint may be bound without CURVE keys.
public enum EndpointSecurity {
    /// True for loopback TCP (`127.*`, `localhost`, `[::1]`), `ipc://` and `inproc://`.
    public static func isLocal(_ endpoint: String) -> Bool {
        if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") { return true }
        guard endpoint.hasPrefix("tcp://") else { return false }
        var host = String(endpoint.dropFirst("tcp://".count))
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return false }
            host = String(host[host.index(after: host.startIndex)..<close])
            return host == "::1"
        }
        if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
        if host == "localhost" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// Throws unless binding `endpoint` without keys is allowed: local endpoints always are,
    /// others only with `cluster.allow_insecure = true`.
    public static func checkInsecureBind(_ endpoint: String, allowInsecure: Bool) throws {
        if allowInsecure || isLocal(endpoint) { return }
        throw CermError.invalid(
            "refusing to bind \(endpoint) without CURVE keys: set cluster.curve_secret_key_file and cluster.authorized_keys_file "
                + "(see `cerm keygen`), bind a loopback address, or set cluster.allow_insecure = true")
    }

    /// Throws unless `endpoint` is local or `allowInsecure`: a worker's counterpart of
    /// ``checkInsecureBind(_:allowInsecure:)``, so that a worker without keys never sends
    /// weights requests and results in plain text over a network.
    public static func checkInsecureConnect(_ endpoint: String, allowInsecure: Bool) throws {
        if allowInsecure || isLocal(endpoint) { return }
        throw CermError.invalid(
            "refusing to connect to \(endpoint) without CURVE keys: set cluster.worker_secret_key_file and "
                + "cluster.server_public_key_file (see `cerm keygen`), connect to a loopback address, or set cluster.allow_insecure = true")
    }
}
