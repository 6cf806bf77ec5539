import CKernels
import Foundation
import Shared

/// Batched autoregressive generation, shared-prefix reuse and teacher-forced scoring for a
/// Llama/Qwen-family transformer on a flat float32 parameter buffer (``ParameterLayout`` order).
///
/// Typical rollout use:
/// ```swift
/// let generator = try Generator(config: config, parameters: weights)
/// let prefix = try generator.prefill(prefix: queryAndCriteriaTokens)
/// let results = try generator.generate(continuing: prefix, requests: evaluations.map {
///     GenerationRequest(prompt: $0.suffixTokens, seed: $0.seed, maxNewTokens: 256,
///                       temperature: 1, topP: 1, stop: ["</answer>"])
/// })
/// let referenceLogProbs = try referenceGenerator.score(
///     zip(evaluations, results).map { ScoringRequest(prompt: $0.suffixTokens, tokens: $1.tokens) },
///     continuing: referencePrefix)
/// ```
/// To batch the evaluations of several prefixes (criteria sets) together, prefill each and call
/// ``generate(groups:)`` / ``score(groups:)`` with one ``PrefixedGenerations`` per prefix: larger
/// decode batches are markedly faster (see ``GenerationBenchmark``).
///
/// **Batching.** All requests of one call run together: prompts are prefilled in chunks of up to
/// ``prefillChunkRows`` token rows, then every decode step runs one matrix product per weight
/// matrix over the still-active sequences (`[active, in] · Wᵀ`); finished sequences drop out.
///
/// **Stopping.** A sequence stops after one of ``stopTokens`` (kept as its last token, reason
/// ``FinishReason/eos``), after a stop sequence (``FinishReason/stopSequence``), after
/// `maxNewTokens` (``FinishReason/length``) or when its context would exceed `maxSeqLen` first
/// (``FinishReason/context``).
///
/// **Determinism and batch invariance.** A sequence's tokens and log-probabilities are bitwise
/// functions of the weights, its prompt (and prefix) and its seed only — not of its batch
/// companions, its position in the batch, prefill chunking or thread count:
/// - the random number for generated token `i` is ``CounterRNG/uniform(seed:index:)``(seed, i);
/// - every matrix product goes through ``InvariantMatmul`` (each element is one dot product in an
///   order fixed by the inner dimension). OpenBLAS `sgemm` is *not* used here: measured on
///   OpenBLAS 0.3.21, a row's bits change with the number of rows and the row's position in the
///   call, for every projection shape of the engine and for 1 or 2 threads;
/// - every per-row kernel (norms, RoPE, attention, softmax, sampling) reduces in an order fixed
///   by the vector length.
/// Consequently a prompt row computes the same bits in prefill as in decode, so continuing a
/// ``SharedPrefix`` equals generating from the concatenated prompt bitwise, and ``score(_:continuing:)``
/// reproduces behaviour log-probabilities bitwise. Across machines the bits are the same whenever
/// the same kernel variant runs (``InvariantMatmul/kernelVariant``; the AVX-512, AVX2 and scalar
/// variants are designed to agree) and libm's `expf` agrees.
///
/// **Memory.** Each call preallocates a ``KVCache`` with one slot per request (positions
/// `prompt + maxNewTokens`) and grows the reusable workspace once; the per-token decode loop does
/// no heap allocation (buffers are reserved up front, result arrays have reserved capacity).
///
/// Not thread-safe: use one generator per thread. A generator keeps a private copy-on-write
/// reference to the parameter array.
public final class Generator {
    /// The architecture.
    public let config: TransformerConfig
    /// The parameter layout of ``config``.
    public let layout: ParameterLayout
    /// The flat parameters (``ParameterLayout`` order).
    public private(set) var parameters: [Float]
    /// Maximum token rows per prefill forward pass (bounds workspace memory; larger is faster
    /// for long prompts).
    public var prefillChunkRows = 512
    /// The tokens that end a sequence: the byte tokenizer's `<|eos|>` (258) by default; a
    /// pretrained model's end-of-turn token(s) and EOS (`ChatCodec.stopTokens`).
    public var stopTokens: [TokenID] = [ByteTokenizer.Special.eos.rawValue]

    private(set) var parametersVersion = 0
    private let offsets: ParameterOffsets
    private let ropeCosines: UnsafeMutablePointer<Float>
    private let ropeSines: UnsafeMutablePointer<Float>
    let workspace: InferenceWorkspace
    private let sampler: TokenSampler
    /// Samplers of the parallel parts after the first (``sampler``), made on first use: a
    /// decode step samples its rows in parallel, each part with its own scratch.
    private var partSamplers: [TokenSampler] = []

    /// A generator for `config` over `parameters` (exactly `ParameterLayout(config).totalCount`
    /// floats). The array is not copied unless the caller mutates its own copy later.
    public init(config: TransformerConfig, parameters: [Float]) throws {
        let layout = ParameterLayout(config)
        guard parameters.count == layout.totalCount else {
            throw GenerationError.parameterCount(expected: layout.totalCount, actual: parameters.count)
        }
        guard config.heads > 0, config.kvHeads > 0, config.heads % config.kvHeads == 0, config.headDim % 2 == 0,
              config.maxSeqLen > 0, config.vocabSize > 0 else {
            throw GenerationError.unsupportedConfig(config.jsonString())
        }
        self.config = config
        self.layout = layout
        self.parameters = parameters
        offsets = ParameterOffsets(layout, config: config)
        workspace = InferenceWorkspace(config: config)
        sampler = TokenSampler(vocabSize: config.vocabSize)

        // RoPE tables computed as Hugging Face does in float32: inv_freq_i = 1 / theta^(2i/d),
        // angle = float(pos) · inv_freq_i; cos/sin of the float32 angle.
        let half = config.headDim / 2
        ropeCosines = .allocate(capacity: config.maxSeqLen * half)
        ropeSines = .allocate(capacity: config.maxSeqLen * half)
        let theta = Float(config.ropeTheta)
        for i in 0..<half {
            let inverseFrequency = 1 / Foundation.pow(theta, Float(2 * i) / Float(config.headDim))
            for position in 0..<config.maxSeqLen {
                let angle = Double(Float(position) * inverseFrequency)
                ropeCosines[position * half + i] = Float(Foundation.cos(angle))
                ropeSines[position * half + i] = Float(Foundation.sin(angle))
            }
        }
    }

    /// Same as the array initializer, copying the parameters out of a buffer
    /// (e.g. the trainer's flat weight storage).
    public convenience init(config: TransformerConfig, parameters: UnsafeBufferPointer<Float>) throws {
        try self.init(config: config, parameters: Array(parameters))
    }

    deinit {
        ropeCosines.deallocate()
        ropeSines.deallocate()
    }

    /// Rewrites the weights in place (same layout): `body` must set every value. Reuses the
    /// buffer when no one else holds it, where ``setParameters(_:)`` takes a new one (0.5 GB of
    /// fresh pages for a 135M model). Shared prefixes computed before become invalid.
    public func updateParameters(_ body: (UnsafeMutableBufferPointer<Float>) throws -> Void) rethrows {
        try parameters.withUnsafeMutableBufferPointer { try body($0) }
        parametersVersion += 1
    }

    /// Replaces the weights (same layout). Shared prefixes computed before become invalid.
    public func setParameters(_ parameters: [Float]) throws {
        guard parameters.count == layout.totalCount else {
            throw GenerationError.parameterCount(expected: layout.totalCount, actual: parameters.count)
        }
        self.parameters = parameters
        parametersVersion += 1
    }

    // MARK: - Public entry points

    /// Computes the keys/values of `prefix` once, for many continuations.
    ///
    /// - Throws: ``GenerationError`` if `prefix` is empty, has out-of-vocabulary tokens, or is
    ///   longer than `maxSeqLen`.
    public func prefill(prefix: [TokenID]) throws -> SharedPrefix {
        guard !prefix.isEmpty else { throw GenerationError.emptyPrompt(request: 0) }
        try validate(tokens: prefix, request: 0)
        guard prefix.count <= config.maxSeqLen else {
            throw GenerationError.contextTooLong(request: 0, length: prefix.count, maxSeqLen: config.maxSeqLen)
        }
        let cache = KVCache(config: config, sequences: 1, capacity: prefix.count)
        var lastLogits = [Float](repeating: 0, count: config.vocabSize)
        let vocab = config.vocabSize
        withParameters { params in
            runPrefill(sequences: [prefix], cache: cache, prefixes: [nil], params: params,
                       wantsLogits: { _, index in index == prefix.count - 1 }) { _, _, logits in
                lastLogits.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: logits, count: vocab) }
            }
        }
        return SharedPrefix(tokens: prefix, cache: cache, lastLogits: lastLogits,
                            owner: ObjectIdentifier(self), parametersVersion: parametersVersion)
    }

    /// Generates a continuation for every request, batched together.
    ///
    /// - Returns: one result per request, in request order.
    /// - Throws: ``GenerationError`` on an empty prompt, an out-of-vocabulary token, a prompt
    ///   longer than `maxSeqLen`, `maxNewTokens < 0`, a negative/non-finite temperature or
    ///   `topP` outside `(0, 1]`. Generation stops early with ``FinishReason/context`` when the
    ///   context reaches `maxSeqLen`.
    public func generate(requests: [GenerationRequest]) throws -> [GenerationResult] {
        try runGeneration(requests: requests, prefixes: Array(repeating: nil, count: requests.count))
    }

    /// Generates continuations of a shared prefix: request `i` sees `prefix.tokens + prompt_i`,
    /// and the prefix's keys/values are read in place, not recomputed. Results equal those of
    /// ``generate(requests:)`` on the concatenated prompts, bit for bit. Requests may have empty
    /// prompts (the first token then comes from the prefix's last logits).
    public func generate(continuing prefix: SharedPrefix, requests: [GenerationRequest]) throws -> [GenerationResult] {
        try generate(groups: [PrefixedGenerations(prefix: prefix, requests: requests)])[0]
    }

    /// Generates several groups in ONE batch, each group continuing its own shared prefix (or none):
    /// e.g. the evaluations of several criteria sets at once, so decode steps run over all of them.
    /// Results are per group, in request order; each is bitwise what the group would get alone.
    /// Error request indices count requests across groups in order.
    public func generate(groups: [PrefixedGenerations]) throws -> [[GenerationResult]] {
        for group in groups { if let prefix = group.prefix { try check(prefix) } }
        let flat = try runGeneration(requests: groups.flatMap(\.requests),
                                     prefixes: groups.flatMap { g in g.requests.map { _ in g.prefix } })
        return Self.split(flat, by: groups.map(\.requests.count))
    }

    private static func split<T>(_ flat: [T], by counts: [Int]) -> [[T]] {
        var groups: [[T]] = []
        var start = 0
        for count in counts {
            groups.append(Array(flat[start ..< start + count]))
            start += count
        }
        return groups
    }

    /// Teacher-forced log-probabilities: for each request, `log_softmax(logits / T)[tokens[j]]`
    /// at the position of `tokens[j]` given `prefix + prompt + tokens[..<j]` (`T = 0` → `1`),
    /// the same arithmetic as the behaviour log-probabilities of ``generate(requests:)``.
    /// All requests are batched into the same prefill passes.
    public func score(_ requests: [ScoringRequest], continuing prefix: SharedPrefix? = nil) throws -> [[Float]] {
        try score(groups: [PrefixedScorings(prefix: prefix, requests: requests)])[0]
    }

    /// ``score(_:continuing:)`` for several groups with different prefixes, batched together.
    /// Scores are per group and request; error request indices count across groups in order.
    public func score(groups: [PrefixedScorings]) throws -> [[[Float]]] {
        for group in groups { if let prefix = group.prefix { try check(prefix) } }
        let requests = groups.flatMap(\.requests)
        let prefixes = groups.flatMap { g in g.requests.map { _ in g.prefix } }
        var contexts: [[TokenID]] = []
        contexts.reserveCapacity(requests.count)
        for (index, request) in requests.enumerated() {
            try validate(tokens: request.prompt, request: index)
            try validate(tokens: request.tokens, request: index)
            guard request.temperature >= 0, request.temperature.isFinite else {
                throw GenerationError.invalidSampling(request: index, detail: "temperature \(request.temperature)")
            }
            if prefixes[index] == nil && request.prompt.isEmpty && !request.tokens.isEmpty {
                throw GenerationError.emptyPrompt(request: index)
            }
            let length = (prefixes[index]?.length ?? 0) + request.prompt.count + request.tokens.count - 1
            guard length <= config.maxSeqLen else {
                throw GenerationError.contextTooLong(request: index, length: length, maxSeqLen: config.maxSeqLen)
            }
            // The last scored token is never fed: its logits would predict the token after it.
            contexts.append(Array((request.prompt + request.tokens).dropLast()))
        }
        var scores = requests.map { [Float](repeating: 0, count: $0.tokens.count) }
        for (index, request) in requests.enumerated() where request.prompt.isEmpty && !request.tokens.isEmpty {
            if let prefix = prefixes[index] {
                scores[index][0] = prefix.lastLogits.withUnsafeBufferPointer {
                    sampler.logProbability(of: request.tokens[0], logits: $0, temperature: request.temperature)
                }
            }
        }
        let capacity = max(1, contexts.map(\.count).max() ?? 1)
        let cache = KVCache(config: config, sequences: requests.count, capacity: capacity)
        let vocab = config.vocabSize
        withParameters { params in
            runPrefill(sequences: contexts, cache: cache, prefixes: prefixes, params: params,
                       wantsLogits: { sequence, index in index >= requests[sequence].prompt.count - 1 }) {
                sequence, index, logits in
                let request = requests[sequence]
                let target = index - (request.prompt.count - 1)
                scores[sequence][target] = sampler.logProbability(
                    of: request.tokens[target], logits: UnsafeBufferPointer(start: logits, count: vocab),
                    temperature: request.temperature)
            }
        }
        return Self.split(scores, by: groups.map(\.requests.count))
    }

    /// Single-sequence convenience for ``score(_:continuing:)``.
    public func scoreContinuation(prompt: [TokenID], tokens: [TokenID], temperature: Float,
                                  continuing prefix: SharedPrefix? = nil) throws -> [Float] {
        try score([ScoringRequest(prompt: prompt, tokens: tokens, temperature: temperature)], continuing: prefix)[0]
    }

    /// Logits at every position of `tokens` through the cached inference path (`[count][vocab]`);
    /// for diagnostics and tests.
    public func logits(tokens: [TokenID]) throws -> [[Float]] {
        guard !tokens.isEmpty else { throw GenerationError.emptyPrompt(request: 0) }
        try validate(tokens: tokens, request: 0)
        guard tokens.count <= config.maxSeqLen else {
            throw GenerationError.contextTooLong(request: 0, length: tokens.count, maxSeqLen: config.maxSeqLen)
        }
        var result = [[Float]](repeating: [], count: tokens.count)
        let cache = KVCache(config: config, sequences: 1, capacity: tokens.count)
        let vocab = config.vocabSize
        withParameters { params in
            runPrefill(sequences: [tokens], cache: cache, prefixes: [nil], params: params, wantsLogits: { _, _ in true }) {
                _, index, logits in
                result[index] = Array(UnsafeBufferPointer(start: logits, count: vocab))
            }
        }
        return result
    }

    /// Logits at every position of `tokens` computed the way decoding does: one forward row per
    /// step, each attending to the cache written by the previous steps.
    func stepwiseLogits(tokens: [TokenID]) throws -> [[Float]] {
        try validate(tokens: tokens, request: 0)
        guard tokens.count <= config.maxSeqLen else {
            throw GenerationError.contextTooLong(request: 0, length: tokens.count, maxSeqLen: config.maxSeqLen)
        }
        let cache = KVCache(config: config, sequences: 1, capacity: max(1, tokens.count))
        workspace.reserve(rows: 1)
        let vocab = config.vocabSize
        return withParameters { params in
            tokens.enumerated().map { position, token in
                workspace.rows[0] = InferenceRow(slot: 0, position: position, token: token)
                workspace.logitRows[0] = 0
                forward(rowCount: 1, logitRowCount: 1, cache: cache, prefixes: [nil], params: params)
                return Array(UnsafeBufferPointer(start: workspace.logits, count: vocab))
            }
        }
    }

    /// Times the inference workspace was (re)allocated; constant across calls whose batch and
    /// prompt sizes do not exceed earlier ones (used by tests to show the decode loop reuses it).
    public var workspaceAllocationCount: Int { workspace.allocationCount }

    // MARK: - Validation

    private func validate(tokens: [TokenID], request: Int) throws {
        for (position, token) in tokens.enumerated() where token < 0 || Int(token) >= config.vocabSize {
            throw GenerationError.invalidToken(request: request, position: position, token: token,
                                               vocabSize: config.vocabSize)
        }
    }

    private func check(_ prefix: SharedPrefix) throws {
        guard prefix.ownerIdentity == ObjectIdentifier(self) else {
            throw GenerationError.foreignPrefix(detail: "computed by another generator")
        }
        guard prefix.parametersVersion == parametersVersion else {
            throw GenerationError.foreignPrefix(detail: "computed with weights replaced since (version "
                                                + "\(prefix.parametersVersion), now \(parametersVersion))")
        }
    }

    private func withParameters<R>(_ body: (UnsafePointer<Float>) throws -> R) rethrows -> R {
        try parameters.withUnsafeBufferPointer { buffer in
            // `init` checked the count against the layout, which is never empty.
            try body(buffer.baseAddress!)
        }
    }

    // MARK: - Generation

    /// Per-request decoding state; arrays have capacity reserved for `limit` tokens.
    private struct SequenceState {
        var tokens: [TokenID]
        var logProbs: [Float]
        var limit: Int
        var finish: FinishReason?
    }

    /// Checks each request against the model (and its shared prefix) and returns its starting
    /// state, with the number of tokens it may generate, and the KV-cache capacity the batch needs.
    private func startingStates(_ requests: [GenerationRequest], prefixLengths: [Int], prefixes: [SharedPrefix?]) throws
        -> (states: [SequenceState], capacity: Int) {
        var states: [SequenceState] = []
        states.reserveCapacity(requests.count)
        var capacity = 1
        for (index, request) in requests.enumerated() {
            if prefixes[index] == nil && request.prompt.isEmpty { throw GenerationError.emptyPrompt(request: index) }
            try validate(tokens: request.prompt, request: index)
            guard request.maxNewTokens >= 0 else {
                throw GenerationError.invalidSampling(request: index, detail: "maxNewTokens \(request.maxNewTokens)")
            }
            guard request.temperature >= 0, request.temperature.isFinite else {
                throw GenerationError.invalidSampling(request: index, detail: "temperature \(request.temperature)")
            }
            guard request.topP > 0, request.topP <= 1 else {
                throw GenerationError.invalidSampling(request: index, detail: "topP \(request.topP) not in (0, 1]")
            }
            let context = prefixLengths[index] + request.prompt.count
            guard context <= config.maxSeqLen else {
                throw GenerationError.contextTooLong(request: index, length: context, maxSeqLen: config.maxSeqLen)
            }
            // Generated token j is fed at position context + j, so the last one fed is at
            // maxSeqLen - 1 and at most maxSeqLen - context + 1 tokens can be produced.
            let limit = min(request.maxNewTokens, config.maxSeqLen - context + 1)
            states.append(SequenceState(tokens: [], logProbs: [], limit: limit,
                                        finish: limit == 0 ? .length : nil))
            states[index].tokens.reserveCapacity(limit)
            states[index].logProbs.reserveCapacity(limit)
            capacity = max(capacity, request.prompt.count + limit - 1)
        }
        return (states, capacity)
    }

    /// `prefixes[i]` is request `i`'s shared prefix (checked by the caller) or nil.
    private func runGeneration(requests: [GenerationRequest], prefixes: [SharedPrefix?]) throws -> [GenerationResult] {
        let prefixLengths = prefixes.map { $0?.length ?? 0 }
        var states: [SequenceState]
        let capacity: Int
        (states, capacity) = try startingStates(requests, prefixLengths: prefixLengths, prefixes: prefixes)
        guard !requests.isEmpty else { return [] }

        let cache = KVCache(config: config, sequences: requests.count, capacity: capacity)
        let vocab = config.vocabSize
        workspace.reserve(rows: requests.count)

        /// The random number of the sequence's next token: from its seed and position only.
        func uniform(_ sequence: Int) -> Double {
            CounterRNG.uniform(seed: requests[sequence].seed, index: UInt64(states[sequence].tokens.count))
        }

        func accept(_ sequence: Int, logits: UnsafePointer<Float>) {
            let request = requests[sequence]
            record(sequence, sampler.sample(logits: UnsafeBufferPointer(start: logits, count: vocab),
                                            temperature: request.temperature, topP: request.topP, uniform: uniform(sequence)))
        }

        func record(_ sequence: Int, _ pick: (token: TokenID, logProb: Float)) {
            let request = requests[sequence]
            states[sequence].tokens.append(pick.token)
            states[sequence].logProbs.append(pick.logProb)
            if stopTokens.contains(pick.token) {
                states[sequence].finish = .eos
            } else if Self.endsWithStopSequence(states[sequence].tokens, request.stopSequences) {
                states[sequence].finish = .stopSequence
            } else if states[sequence].tokens.count >= states[sequence].limit {
                // The limit is the budget or the context room, whichever is smaller; the budget
                // is named when both run out together.
                states[sequence].finish = states[sequence].tokens.count >= request.maxNewTokens ? .length : .context
            }
        }

        try withParameters { params in
            // First token of each sequence: from its prompt's last logits (or the prefix's).
            var prompts: [[TokenID]] = []
            prompts.reserveCapacity(requests.count)
            for (index, request) in requests.enumerated() {
                prompts.append(states[index].finish == nil ? request.prompt : [])
            }
            runPrefill(sequences: prompts, cache: cache, prefixes: prefixes, params: params,
                       wantsLogits: { sequence, index in index == prompts[sequence].count - 1 }) {
                sequence, _, logits in
                accept(sequence, logits: logits)
            }
            for (index, request) in requests.enumerated() where request.prompt.isEmpty && states[index].finish == nil {
                if let prefix = prefixes[index] {
                    prefix.lastLogits.withUnsafeBufferPointer { accept(index, logits: $0.baseAddress!) }
                }
            }

            // Decode: one row per active sequence per step. No allocation below: `active` and the
            // state arrays have reserved capacity, all row buffers are in the workspace.
            var active: [Int] = []
            active.reserveCapacity(requests.count)
            for index in requests.indices where states[index].finish == nil { active.append(index) }
            var uniforms = [Double](repeating: 0, count: requests.count)
            var picks = [(token: TokenID, logProb: Float)](repeating: (0, 0), count: requests.count)
            let parts = min(InvariantMatmul.threads, requests.count)
            while partSamplers.count < parts - 1 { partSamplers.append(TokenSampler(vocabSize: vocab)) }
            let samplers = [sampler] + partSamplers
            while !active.isEmpty {
                try Task.checkCancellation()
                let rows = workspace.rows
                for (row, sequence) in active.enumerated() {
                    let position = prefixLengths[sequence] + requests[sequence].prompt.count + states[sequence].tokens.count - 1
                    rows[row] = InferenceRow(slot: sequence, position: position,
                                             token: states[sequence].tokens[states[sequence].tokens.count - 1])
                    workspace.logitRows[row] = row
                }
                forward(rowCount: active.count, logitRowCount: active.count, cache: cache, prefixes: prefixes, params: params)
                // Rows are sampled in parallel (each from its own logits and random number, so
                // the picks do not depend on the split), then recorded in order.
                for (row, sequence) in active.enumerated() { uniforms[row] = uniform(sequence) }
                let rowCount = active.count, rowParts = min(parts, rowCount), logits = workspace.logits
                active.withUnsafeBufferPointer { activeRows in
                    uniforms.withUnsafeBufferPointer { uniforms in
                        picks.withUnsafeMutableBufferPointer { picks in
                            ParallelParts.run(rowParts) { part in
                                for row in stride(from: part, to: rowCount, by: rowParts) {
                                    let request = requests[activeRows[row]]
                                    picks[row] = samplers[part].sample(
                                        logits: UnsafeBufferPointer(start: logits + row * vocab, count: vocab),
                                        temperature: request.temperature, topP: request.topP, uniform: uniforms[row])
                                }
                            }
                        }
                    }
                }
                for (row, sequence) in active.enumerated() { record(sequence, picks[row]) }
                active.removeAll { states[$0].finish != nil }
            }
        }
        return states.map { GenerationResult(tokens: $0.tokens, logProbs: $0.logProbs, finishReason: $0.finish ?? .length) }
    }

    static func endsWithStopSequence(_ tokens: [TokenID], _ stops: [[UInt8]]) -> Bool {
        for stop in stops where !stop.isEmpty && stop.count <= tokens.count {
            var matches = true
            let start = tokens.count - stop.count
            for (offset, byte) in stop.enumerated() where tokens[start + offset] != TokenID(byte) {
                matches = false
                break
            }
            if matches { return true }
        }
        return false
    }

    // MARK: - Forward passes

    /// Feeds every token of `sequences[s]` into cache slot `s` (positions after the prefix), in
    /// chunks of at most ``prefillChunkRows`` rows across sequences, and calls `consume(s, i,
    /// logits)` for each token `i` of sequence `s` for which `wantsLogits(s, i)` holds, in order.
    private func runPrefill(
        sequences: [[TokenID]], cache: KVCache, prefixes: [SharedPrefix?], params: UnsafePointer<Float>,
        wantsLogits: (Int, Int) -> Bool, consume: (Int, Int, UnsafePointer<Float>) -> Void
    ) {
        let totalRows = sequences.reduce(0) { $0 + $1.count }
        guard totalRows > 0 else { return }
        let chunk = max(1, min(prefillChunkRows, totalRows))
        workspace.reserve(rows: chunk)
        let vocab = config.vocabSize
        var pending: [(sequence: Int, index: Int)] = []
        pending.reserveCapacity(chunk)
        var rowCount = 0
        func flush() {
            guard rowCount > 0 else { return }
            forward(rowCount: rowCount, logitRowCount: pending.count, cache: cache, prefixes: prefixes, params: params)
            for (i, item) in pending.enumerated() {
                consume(item.sequence, item.index, workspace.logits + i * vocab)
            }
            pending.removeAll(keepingCapacity: true)
            rowCount = 0
        }
        for (sequence, tokens) in sequences.enumerated() {
            let prefixLength = prefixes[sequence]?.length ?? 0
            for (index, token) in tokens.enumerated() {
                workspace.rows[rowCount] = InferenceRow(slot: sequence, position: prefixLength + index, token: token)
                if wantsLogits(sequence, index) {
                    workspace.logitRows[pending.count] = rowCount
                    pending.append((sequence, index))
                }
                rowCount += 1
                if rowCount == chunk { flush() }
            }
        }
        flush()
    }

    /// One forward pass over `workspace.rows[0..<rowCount]`: writes each row's keys/values into
    /// its cache slot, and leaves logits of `workspace.logitRows[0..<logitRowCount]` in
    /// `workspace.logits` (compacted, in that order).
    private func forward(rowCount: Int, logitRowCount: Int, cache: KVCache, prefixes: [SharedPrefix?],
                         params: UnsafePointer<Float>) {
        let ws = workspace
        let hidden = config.hiddenSize, qDim = config.qDim, kvDim = config.kvDim, ffn = config.ffnSize
        let headDim = config.headDim, heads = config.heads, kvHeads = config.kvHeads, half = headDim / 2
        let eps = Float(config.rmsNormEps)
        let rows = ws.rows
        let x = ws.residual, normed = ws.normed

        for r in 0..<rowCount {
            (x + r * hidden).update(from: params + offsets.embed + Int(rows[r].token) * hidden, count: hidden)
        }

        for (layer, w) in offsets.blocks.enumerated() {
            for r in 0..<rowCount {
                InferenceKernels.rmsNorm(x + r * hidden, params + w.inputNorm, normed + r * hidden, hidden, eps: eps)
            }
            project(normed, rows: rowCount, weight: params + w.q, out: ws.queries, outDim: qDim, inDim: hidden)
            project(normed, rows: rowCount, weight: params + w.k, out: ws.keys, outDim: kvDim, inDim: hidden)
            project(normed, rows: rowCount, weight: params + w.v, out: ws.values, outDim: kvDim, inDim: hidden)

            for r in 0..<rowCount {
                let q = ws.queries + r * qDim, k = ws.keys + r * kvDim, v = ws.values + r * kvDim
                if let b = w.qBias { InferenceKernels.axpy(1, params + b, q, qDim) }
                if let b = w.kBias { InferenceKernels.axpy(1, params + b, k, kvDim) }
                if let b = w.vBias { InferenceKernels.axpy(1, params + b, v, kvDim) }
                if let qn = w.qNorm, let kn = w.kNorm {
                    for h in 0..<heads { InferenceKernels.rmsNorm(q + h * headDim, params + qn, q + h * headDim, headDim, eps: eps) }
                    for h in 0..<kvHeads { InferenceKernels.rmsNorm(k + h * headDim, params + kn, k + h * headDim, headDim, eps: eps) }
                }
                let position = rows[r].position
                let cosines = ropeCosines + position * half, sines = ropeSines + position * half
                for h in 0..<heads { InferenceKernels.rope(q + h * headDim, cosines, sines, half: half) }
                for h in 0..<kvHeads { InferenceKernels.rope(k + h * headDim, cosines, sines, half: half) }
                let slot = rows[r].slot, cacheColumn = position - (prefixes[slot]?.length ?? 0)
                // Keys are cached transposed (`[kvDim, capacity]`) so attention scores of consecutive
                // positions are vertical multiply-adds; values stay row-major.
                let keysT = cache.keys(layer: layer, sequence: slot), capacity = cache.capacity
                for feature in 0..<kvDim { keysT[feature * capacity + cacheColumn] = k[feature] }
                (cache.values(layer: layer, sequence: slot) + cacheColumn * kvDim).update(from: v, count: kvDim)
            }

            attend(rowCount: rowCount, layer: layer, cache: cache, prefixes: prefixes)
            project(ws.attention, rows: rowCount, weight: params + w.o, out: x, outDim: hidden, inDim: qDim, accumulate: true)

            for r in 0..<rowCount {
                InferenceKernels.rmsNorm(x + r * hidden, params + w.postNorm, normed + r * hidden, hidden, eps: eps)
            }
            project(normed, rows: rowCount, weight: params + w.gate, out: ws.gate, outDim: ffn, inDim: hidden)
            project(normed, rows: rowCount, weight: params + w.up, out: ws.up, outDim: ffn, inDim: hidden)
            for r in 0..<rowCount { InferenceKernels.swiglu(ws.gate + r * ffn, ws.up + r * ffn, ffn) }
            project(ws.gate, rows: rowCount, weight: params + w.down, out: x, outDim: hidden, inDim: ffn, accumulate: true)
        }

        guard logitRowCount > 0 else { return }
        for i in 0..<logitRowCount {
            let r = ws.logitRows[i]
            InferenceKernels.rmsNorm(x + r * hidden, params + offsets.finalNorm, ws.logitInput + i * hidden, hidden, eps: eps)
        }
        project(ws.logitInput, rows: logitRowCount, weight: params + offsets.lmHead, out: ws.logits,
                outDim: config.vocabSize, inDim: hidden)
    }

    /// Attention of every row over its cache (see `cerm_attend_row` in
    /// `Sources/CKernels/include/cerm_rowgemm.h` for the fixed arithmetic). Rows are independent, so they
    /// are spread over ``InvariantMatmul/threads`` without changing any bit.
    private func attend(rowCount: Int, layer: Int, cache: KVCache, prefixes: [SharedPrefix?]) {
        let ws = workspace
        let heads = Int32(config.heads), kvHeads = Int32(config.kvHeads), headDim = Int32(config.headDim)
        let qDim = config.qDim, kvDim = Int32(config.kvDim)
        let scale = 1 / Float(config.headDim).squareRoot()
        let rowsAddress = UInt(bitPattern: ws.rows), queries = UInt(bitPattern: ws.queries)
        let outputs = UInt(bitPattern: ws.attention), scores = UInt(bitPattern: ws.scores)
        let scoreStride = ws.scoreStride, scorePartSize = ws.scorePartSize, ownCapacity = Int32(cache.capacity)
        var work = 0
        for r in 0..<rowCount { work += ws.rows[r].position + 1 }
        let parts = work * config.qDim >= 1 << 17 ? max(1, min(InvariantMatmul.threads, rowCount, ws.scoreParts)) : 1
        let body = { @Sendable (part: Int) in
            guard let rows = UnsafePointer<InferenceRow>(bitPattern: rowsAddress),
                  let q = UnsafePointer<Float>(bitPattern: queries), let out = UnsafeMutablePointer<Float>(bitPattern: outputs),
                  let partScores = UnsafeMutablePointer<Float>(bitPattern: scores)?.advanced(by: part * scorePartSize)
            else { return }
            var r = part
            while r < rowCount {
                let row = rows[r]
                let prefix = prefixes[row.slot]
                cerm_attend_row(heads, kvHeads, headDim, Int32(row.position + 1), q + r * qDim, out + r * qDim,
                                prefix.map { UnsafePointer($0.cache.keys(layer: layer, sequence: 0)) },
                                prefix.map { UnsafePointer($0.cache.values(layer: layer, sequence: 0)) },
                                Int32(prefix?.length ?? 0), Int32(prefix?.cache.capacity ?? 0),
                                cache.keys(layer: layer, sequence: row.slot), cache.values(layer: layer, sequence: row.slot),
                                ownCapacity, kvDim, scale, partScores, Int32(scoreStride), -1)
                r += parts
            }
        }
        ParallelParts.run(parts, body)
    }

    /// `out[rows, outDim] (+)= input[rows, inDim] · weightᵀ` for an HF `[out, in]` weight.
    @inline(__always)
    private func project(_ input: UnsafePointer<Float>, rows: Int, weight: UnsafePointer<Float>,
                         out: UnsafeMutablePointer<Float>, outDim: Int, inDim: Int, accumulate: Bool = false) {
        InvariantMatmul.multiply(m: rows, n: outDim, k: inDim, a: input, lda: inDim, b: weight, ldb: inDim,
                                 c: out, ldc: outDim, accumulate: accumulate)
    }
}
