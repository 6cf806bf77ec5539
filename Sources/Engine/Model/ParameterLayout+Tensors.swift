import Shared

extension ParameterLayout {
    /// The tensors of a flat buffer in this layout, in layout order, as (HF name, HF shape,
    /// values). Used to hand weights or AdamW moments to checkpoint code that stores named
    /// tensors.
    public func tensors(of values: [Float]) throws -> [(name: String, shape: [Int], values: [Float])] {
        guard values.count == totalCount else {
            throw CermError.invalid("ParameterLayout.tensors: \(values.count) values, layout needs \(totalCount)")
        }
        return specs.map { ($0.name, $0.shape, Array(values[$0.range])) }
    }

    /// The flat buffer of named tensors (any order). Every tensor of the layout must be present
    /// exactly once with its shape; unknown names are errors. Inverse of ``tensors(of:)``.
    public func flatten(_ tensors: [(name: String, shape: [Int], values: [Float])]) throws -> [Float] {
        var out = [Float](repeating: 0, count: totalCount)
        var seen = Set<String>()
        for t in tensors {
            guard let spec = spec(t.name) else {
                throw CermError.invalid("ParameterLayout.flatten: unknown tensor \(t.name)")
            }
            guard t.shape == spec.shape, t.values.count == spec.count else {
                throw CermError.invalid("ParameterLayout.flatten: tensor \(t.name) has shape \(t.shape) and \(t.values.count) values, expected \(spec.shape)")
            }
            guard seen.insert(t.name).inserted else {
                throw CermError.invalid("ParameterLayout.flatten: tensor \(t.name) given twice")
            }
            out.replaceSubrange(spec.range, with: t.values)
        }
        if let missing = specs.first(where: { !seen.contains($0.name) }) {
            throw CermError.invalid("ParameterLayout.flatten: missing tensor \(missing.name)")
        }
        return out
    }
}
