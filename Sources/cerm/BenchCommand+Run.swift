import ArgumentParser
import Configuration
import Datasets
import Engine
import EngineConfiguration
import Foundation
import Logging
import Method
import Shared
import WireProtocol
import Worker

/// `cerm bench rollout` and `cerm bench weights`: the two costs of a run's step a worker sees, on a
/// config's own model and shapes.
extension BenchCommand {
    struct Rollout_: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rollout",
            abstract: "A worker's rollout of tasks of the config's shapes (nc, ne, token budgets) on synthetic pairs, timed per stage.",
            discussion: "Policy and reference are the config's initial weights (model.source, or cerm's own model from run.seed). Stage 1 samples the criteria; stage 2 evaluates under the teacher's criteria, so that every criteria set parses whatever the weights write. Each stage's time includes its prefill and the reference's scoring.")

        @Option(help: "The run's configuration (model, [rollout] shapes, run.seed).")
        var config: String = "configs/smollm2-135m.toml"
        @Option(help: "Pairs per task (cluster.pairs_per_task).")
        var pairsPerTask: Int = 1
        @Option(help: "Tasks, each with new pairs.")
        var tasks: Int = 1
        @Option(help: "BLAS threads.")
        var threads: Int = 1

        func run() throws {
            guard pairsPerTask > 0, tasks > 0 else { throw ValidationError("--pairs-per-task and --tasks must be positive") }
            do {
                var loaded = try Config.load(path: config)
                let runModel = try RunModel.resolve(&loaded)
                BLAS.setThreads(threads)
                var quiet = Logger(label: "cerm.bench")
                quiet.logLevel = .warning
                let format = runModel.promptFormat(loaded.rollout.format)
                let executor = try EngineRolloutExecutor(model: runModel.architecture, format: format, mode: loaded.reward.mode, logger: quiet)
                let weights = try runModel.initialWeights(config: loaded)
                try executor.load(policy: weights)
                try executor.load(reference: weights)
                let data = SyntheticTask.generate(trainCount: pairsPerTask * tasks, evalCount: 0, seed: loaded.run.seed)
                let teacher = Teacher(errorRate: 0)
                let parameters = RolloutParameters(config: loaded.rollout)
                print("# cerm bench rollout (\(config): nc \(parameters.nc), ne \(parameters.ne), criteria ≤ \(parameters.criteriaMaxTokens), "
                      + "evaluations ≤ \(parameters.evaluationMaxTokens) tokens; \(pairsPerTask) pair(s) per task, BLAS threads \(threads))")
                var totals = (criteria: 0, criteriaSeconds: 0.0, evaluations: 0, evaluationSeconds: 0.0)
                for taskIndex in 0..<tasks {
                    let pairs = data.train[taskIndex * pairsPerTask ..< (taskIndex + 1) * pairsPerTask].enumerated().map { offset, pair in
                        TaskPair(pairID: UInt64(taskIndex * pairsPerTask + offset), query: pair.query, responses: [pair.chosen, pair.rejected])
                    }
                    let task = TaskMessage(taskID: UInt64(taskIndex), step: UInt64(taskIndex), policyVersion: 0, runSeed: loaded.run.seed,
                                           parameters: parameters, pairs: pairs)
                    let plan = try executor.plan(for: task)
                    let sampling = RolloutSampling(parameters: parameters)
                    let items = pairs.map { RolloutItem(pairID: $0.pairID, query: $0.query, responses: $0.responses) }

                    let criteriaStart = Date()
                    let criteria = try executor.criteriaStage(items: items, plan: plan, sampling: sampling)
                    let criteriaSeconds = Date().timeIntervalSince(criteriaStart)
                    let stageTwo = items.map { item in
                        let tokens = teacher.criteria(for: item.query).map { format.outputTokens(text: $0.text(in: format)) } ?? []
                        return (item: item, criteriaOutputs: Array(repeating: tokens, count: plan.nc))
                    }
                    let evaluationStart = Date()
                    let evaluations = try executor.evaluationStage(stageTwo, plan: plan, sampling: sampling)
                    let evaluationSeconds = Date().timeIntervalSince(evaluationStart)

                    let criteriaTokens = criteria.reduce(0) { $0 + $1.tokens.count }
                    let evaluationTokens = evaluations.reduce(0) { $0 + $1.tokens.count }
                    let stopped = evaluations.filter { $0.finishReason == .eos }.count
                    print(String(format: "task %d: stage 1 %d criteria, %d tokens in %.1f s (%.1f tokens/s); stage 2 %d evaluations (%d stopped early), %d tokens in %.1f s (%.1f tokens/s); task %.1f tokens/s",
                                 taskIndex, criteria.count, criteriaTokens, criteriaSeconds, Double(criteriaTokens) / criteriaSeconds,
                                 evaluations.count, stopped, evaluationTokens, evaluationSeconds, Double(evaluationTokens) / evaluationSeconds,
                                 Double(criteriaTokens + evaluationTokens) / (criteriaSeconds + evaluationSeconds)))
                    totals.criteria += criteriaTokens
                    totals.criteriaSeconds += criteriaSeconds
                    totals.evaluations += evaluationTokens
                    totals.evaluationSeconds += evaluationSeconds
                }
                print(String(format: "all tasks: stage 1 %.1f tokens/s, stage 2 %.1f tokens/s, both %.1f tokens/s",
                             Double(totals.criteria) / totals.criteriaSeconds, Double(totals.evaluations) / totals.evaluationSeconds,
                             Double(totals.criteria + totals.evaluations) / (totals.criteriaSeconds + totals.evaluationSeconds)))
            } catch {
                throw exitWithError(error)
            }
        }
    }

    struct Weights_: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "weights",
            abstract: "Weight versions broadcast on loopback TCP: serialisation, chunks served by a ROUTER, workers fetching and decoding them.",
            discussion: "The model's architecture and cluster.weight_chunk_bytes come from the config; the weights are random. A coordinator thread answers WEIGHTS_REQUESTs as the coordinator's socket thread does; each worker thread requests chunks on its own DEALER and ZeroMQ context as a worker does (two in flight), then decodes the floats into the buffer of the version before. A worker assembles each version after the first into the wire buffer of the one before, as a worker does once it has loaded a version: the first fetch is a worker's first, the later ones a run's steady state.")

        @Option(help: "The run's configuration (model architecture, cluster.weight_chunk_bytes, cluster.max_message_bytes).")
        var config: String = "configs/smollm2-135m.toml"
        @Option(help: "Workers fetching at once.")
        var workers: Int = 2
        @Option(help: "Versions each worker fetches, one after the other.")
        var versions: Int = 2

        func run() throws {
            guard workers > 0 else { throw ValidationError("--workers must be positive") }
            guard versions > 0 else { throw ValidationError("--versions must be positive") }
            do {
                var loaded = try Config.load(path: config)
                let architecture = try RunModel.resolve(&loaded).architecture
                let weights = ModelWeights(config: architecture, seed: 1, initStd: 0.02)
                let serializeStart = Date(), serializeCPU = WeightsBroadcast.threadCPUSeconds()
                // As the coordinator's learner thread publishes: chunks encoded from the weights in place.
                var publisher = WeightsPublisher(retain: versions)
                for version in 1...UInt64(versions) {
                    publisher.publish(weights.withWireBytes { PublishedWeights(version: version, bytes: $0, chunkBytes: loaded.cluster.weightChunkBytes) })
                }
                let serializeSeconds = Date().timeIntervalSince(serializeStart) / Double(versions)
                let serializeCPUSeconds = (WeightsBroadcast.threadCPUSeconds() - serializeCPU) / Double(versions)
                let byteCount = ParameterLayout(architecture).totalCount * 4
                print(String(format: "# cerm bench weights (%@): %.1f MB in %d chunks of %d bytes, %d worker(s), %d version(s); serialise and publish %.2f s a version (thread CPU %.2f s)",
                             config, Double(byteCount) / 1e6, publisher.chunkCount(version: 1) ?? 0, loaded.cluster.weightChunkBytes, workers,
                             versions, serializeSeconds, serializeCPUSeconds))
                let report = try WeightsBroadcast.run(publisher: publisher, versions: Array(1...UInt64(versions)), weights: weights, workers: workers,
                                                      codec: MessageCodec(limits: ProtocolLimits(maxMessageBytes: loaded.cluster.maxMessageBytes)))
                for (index, fetches) in report.workers.enumerated() {
                    for (version, worker) in fetches.enumerated() {
                        print(String(format: "worker %d, version %d (%@): fetched in %.2f s (%.0f MB/s), decoded in %.2f s, total %.2f s (thread CPU %.2f s)",
                                     index, version + 1, version == 0 ? "first, a new buffer" : "into the buffer of the one before",
                                     worker.fetch, Double(byteCount) / 1e6 / worker.fetch, worker.decode, worker.fetch + worker.decode, worker.cpu))
                    }
                }
                print(String(format: "coordinator socket thread: CPU %.2f s a version", report.serverCPU / Double(versions)))
                guard report.workers.allSatisfy({ $0.count == versions && $0.allSatisfy(\.matches) }) else {
                    throw CermError.invalid("a worker decoded other weights than were sent")
                }
            } catch {
                throw exitWithError(error)
            }
        }
    }
}

/// The loopback broadcast of `cerm bench weights`.
enum WeightsBroadcast {
    struct WorkerTimes: Sendable {
        var fetch = 0.0, decode = 0.0, matches = false
        /// CPU seconds of the worker's thread (fetch and decode): what a loaded machine inflates least.
        var cpu = 0.0
    }

    private final class Results: @unchecked Sendable {
        let lock = NSLock()
        var times: [[WorkerTimes]]
        var finished = 0
        init(count: Int) { times = Array(repeating: [], count: count) }
    }

    /// Each worker fetches `versions` in order; the times of each fetch, by worker.
    static func run(publisher: WeightsPublisher, versions: [UInt64], weights: ModelWeights, workers: Int,
                    codec: MessageCodec) throws -> (workers: [[WorkerTimes]], serverCPU: Double) {
        let context = try ZMQContext()
        let router = try RouterChannel(context: context, bind: "tcp://127.0.0.1:*", codec: codec, security: .none)
        let endpoint = router.endpoint
        let results = Results(count: workers)
        let expected = weights.values
        let done = DispatchGroup()
        for index in 0..<workers {
            done.enter()
            Thread.detachNewThread {
                defer { done.leave() }
                var fetches: [WorkerTimes] = []
                do {
                    let context = try ZMQContext()
                    let dealer = try DealerChannel(context: context, connect: endpoint, codec: codec, security: .none)
                    var loaded = [Float](repeating: 0, count: expected.count)
                    var spare: [UInt8] = []
                    for version in versions {
                        var times = WorkerTimes()
                        let start = Date(), cpuStart = threadCPUSeconds()
                        var assembler = WeightsAssembler(version: version, reusing: spare)
                        spare = []
                        var bytes: [UInt8]?
                        while bytes == nil {
                            for next in assembler.takeRequests() { _ = try dealer.send(.weightsRequest(version: version, chunkIndex: next)) }
                            guard case let .weightsChunk(chunk)? = try dealer.receive(timeoutMs: 30_000) else {
                                throw CermError.invalid("worker \(index): no chunk of version \(version) within 30 s")
                            }
                            bytes = try assembler.add(chunk)
                        }
                        times.fetch = Date().timeIntervalSince(start)
                        // Into the buffer of the version before, as the executor does.
                        let decodeStart = Date()
                        try ModelWeights.checkWire(bytes ?? [], count: loaded.count)
                        loaded.withUnsafeMutableBufferPointer { ModelWeights.decodeWire(bytes ?? [], into: $0) }
                        times.decode = Date().timeIntervalSince(decodeStart)
                        times.cpu = threadCPUSeconds() - cpuStart
                        times.matches = loaded.withUnsafeBytes { a in
                            expected.withUnsafeBytes { b in a.count == b.count && memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 }
                        }
                        fetches.append(times)
                        // Loaded: its wire buffer takes the next version, as a worker's does.
                        spare = bytes ?? []
                        bytes = nil
                    }
                } catch {
                    FileHandle.standardError.write(Data("worker \(index): \(error)\n".utf8))
                }
                results.lock.withLock {
                    results.times[index] = fetches
                    results.finished += 1
                }
            }
        }
        // The coordinator's socket thread: answer every request until the workers are done.
        let serverStart = threadCPUSeconds()
        while results.lock.withLock({ results.finished < workers }) {
            guard let (peer, message) = try router.receive(timeoutMs: 50) else { continue }
            if case let .weightsRequest(requested, chunkIndex) = message {
                try router.send(publisher.reply(version: requested, chunkIndex: chunkIndex), to: peer)
            }
        }
        done.wait()
        return (results.times, threadCPUSeconds() - serverStart)
    }

    static func threadCPUSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
