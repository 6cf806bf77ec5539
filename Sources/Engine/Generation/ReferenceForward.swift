import Foundation
import Shared

/// A deliberately naive full-sequence forward pass (no cache, no BLAS, plain loops, `Double`
/// accumulation), written straight from the Hugging Face modelling code. It is the reference the
/// tests hold the fast paths against; far too slow for anything else.
public enum ReferenceForward {
    /// Logits `[tokens.count][vocabSize]` of `tokens` under `parameters` (``ParameterLayout`` order).
    public static func logits(config: TransformerConfig, parameters: [Float], tokens: [TokenID]) throws -> [[Float]] {
        let layout = ParameterLayout(config)
        guard parameters.count == layout.totalCount else {
            throw GenerationError.parameterCount(expected: layout.totalCount, actual: parameters.count)
        }
        func tensor(_ name: String) throws -> ArraySlice<Float> {
            guard let spec = layout.spec(name) else { throw GenerationError.missingParameter(name: name) }
            return parameters[spec.offset ..< spec.offset + spec.count]
        }
        let n = tokens.count, h = config.hiddenSize, d = config.headDim
        let eps = config.rmsNormEps

        /// `y = W x (+ b)` for an `[out, in]` weight.
        func linear(_ x: [Float], _ weight: ArraySlice<Float>, _ bias: ArraySlice<Float>?, out: Int) -> [Float] {
            let inDim = x.count
            var y = [Float](repeating: 0, count: out)
            for o in 0..<out {
                var sum = 0.0
                for i in 0..<inDim { sum += Double(weight[weight.startIndex + o * inDim + i]) * Double(x[i]) }
                if let bias { sum += Double(bias[bias.startIndex + o]) }
                y[o] = Float(sum)
            }
            return y
        }
        func rmsNorm(_ x: ArraySlice<Float>, _ weight: ArraySlice<Float>) -> [Float] {
            var meanSquare = 0.0
            for v in x { meanSquare += Double(v) * Double(v) }
            meanSquare /= Double(x.count)
            let scale = 1 / (meanSquare + eps).squareRoot()
            return x.indices.enumerated().map { i, index in Float(Double(x[index]) * scale * Double(weight[weight.startIndex + i])) }
        }
        func rope(_ v: inout [Float], head: Int, position: Int) {
            let half = d / 2
            for i in 0..<half {
                let inverseFrequency = 1 / Foundation.pow(Float(config.ropeTheta), Float(2 * i) / Float(d))
                let angle = Double(Float(position) * inverseFrequency)
                let a = Double(v[head * d + i]), b = Double(v[head * d + i + half])
                v[head * d + i] = Float(a * Foundation.cos(angle) - b * Foundation.sin(angle))
                v[head * d + i + half] = Float(b * Foundation.cos(angle) + a * Foundation.sin(angle))
            }
        }

        let embed = try tensor("model.embed_tokens.weight")
        var x: [[Float]] = tokens.map { t in Array(embed[embed.startIndex + Int(t) * h ..< embed.startIndex + (Int(t) + 1) * h]) }
        for l in 0..<config.layers {
            let p = "model.layers.\(l)."
            let qBias = config.qkvBias ? try tensor(p + "self_attn.q_proj.bias") : nil
            let kBias = config.qkvBias ? try tensor(p + "self_attn.k_proj.bias") : nil
            let vBias = config.qkvBias ? try tensor(p + "self_attn.v_proj.bias") : nil
            var qs: [[Float]] = [], ks: [[Float]] = [], vs: [[Float]] = []
            for t in 0..<n {
                let normed = rmsNorm(x[t][...], try tensor(p + "input_layernorm.weight"))
                var q = linear(normed, try tensor(p + "self_attn.q_proj.weight"), qBias, out: config.qDim)
                var k = linear(normed, try tensor(p + "self_attn.k_proj.weight"), kBias, out: config.kvDim)
                let v = linear(normed, try tensor(p + "self_attn.v_proj.weight"), vBias, out: config.kvDim)
                if config.qkNorm {
                    let qn = try tensor(p + "self_attn.q_norm.weight"), kn = try tensor(p + "self_attn.k_norm.weight")
                    for head in 0..<config.heads { q.replaceSubrange(head * d ..< (head + 1) * d, with: rmsNorm(q[head * d ..< (head + 1) * d], qn)) }
                    for head in 0..<config.kvHeads { k.replaceSubrange(head * d ..< (head + 1) * d, with: rmsNorm(k[head * d ..< (head + 1) * d], kn)) }
                }
                for head in 0..<config.heads { rope(&q, head: head, position: t) }
                for head in 0..<config.kvHeads { rope(&k, head: head, position: t) }
                qs.append(q); ks.append(k); vs.append(v)
            }
            let group = config.heads / config.kvHeads
            for t in 0..<n {
                var attention = [Float](repeating: 0, count: config.qDim)
                for head in 0..<config.heads {
                    let kvHead = head / group
                    var scores = [Double](repeating: 0, count: t + 1)
                    for s in 0...t {
                        var dot = 0.0
                        for i in 0..<d { dot += Double(qs[t][head * d + i]) * Double(ks[s][kvHead * d + i]) }
                        scores[s] = dot / Double(d).squareRoot()
                    }
                    let maximum = scores.max() ?? 0
                    let exps = scores.map { Foundation.exp($0 - maximum) }
                    let total = exps.reduce(0, +)
                    for i in 0..<d {
                        var sum = 0.0
                        for s in 0...t { sum += exps[s] / total * Double(vs[s][kvHead * d + i]) }
                        attention[head * d + i] = Float(sum)
                    }
                }
                let projected = linear(attention, try tensor(p + "self_attn.o_proj.weight"), nil, out: h)
                for i in 0..<h { x[t][i] += projected[i] }
            }
            for t in 0..<n {
                let normed = rmsNorm(x[t][...], try tensor(p + "post_attention_layernorm.weight"))
                let gate = linear(normed, try tensor(p + "mlp.gate_proj.weight"), nil, out: config.ffnSize)
                let up = linear(normed, try tensor(p + "mlp.up_proj.weight"), nil, out: config.ffnSize)
                let activated = zip(gate, up).map { g, u in Float(Double(g) / (1 + Foundation.exp(-Double(g))) * Double(u)) }
                let down = linear(activated, try tensor(p + "mlp.down_proj.weight"), nil, out: h)
                for i in 0..<h { x[t][i] += down[i] }
            }
        }
        let head = try tensor(config.tieEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight")
        let finalNorm = try tensor("model.norm.weight")
        return x.map { row in linear(rmsNorm(row[...], finalNorm), head, nil, out: config.vocabSize) }
    }
}
