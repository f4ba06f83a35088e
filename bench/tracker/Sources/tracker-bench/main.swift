// The error tracker alone, in release mode, without sockets: how many shield decisions per second
// a core makes with a million clients, and how many bytes a tracked client costs.
//
// Three measurements, each on its own tracker as the server builds it (ErrorTracker with
// SystemClock, max_clients 1 000 000, 64 shards, default BackoffPolicy):
//
//   memory   RSS growth (/proc/self/statm) and `tableBytes` after recording one error for each of
//            KEYS distinct keys, so every key holds an entry.
//   mix      the request path of a proxy facing KEYS distinct clients picked at random: `check`;
//            if the verdict is forward or probe, `record` the upstream's answer, an error with
//            probability ERROR_PERCENT %, else a success. Most keys are unknown to the tracker
//            (the miss path, then a success that finds nothing to clear); a key that drew an error
//            is blocked for 0.4-0.5 s (the default base 500 ms, jitter 0.2) and answered `.reject`
//            until its probe. One operation = one request: a check, plus a record when forwarded.
//   shield   `check` only, on KEYS keys that are all tracked (each recorded one error first):
//            the hit path of a storm; once the windows end, the checks hand out probes and then
//            answer `.reject(.probe)`, every one a lookup of a tracked entry.
//
// mix and shield run with 1 thread and with THREADS threads on the same tracker. Each thread
// counts its operations and its own CPU time (CLOCK_THREAD_CPUTIME_ID), so the rate per core is
// operations / CPU seconds and stays honest when other jobs take a share of the machine; the
// wall-clock rate is shown beside it.
//
//   state    `[state]`: a table of KEYS blocked clients saved as the server saves it (exportState,
//            one shard lock at a time, then encode; the file written to a temporary directory
//            with fsync and rename), then read back into a fresh tracker. Meanwhile one thread
//            keeps calling `check` on tracked keys and records each call's latency, so the cost
//            of the save to the request path shows: the longest call and the 99.9th percentile,
//            during the save and during as long a stretch without one.
//
// Environment: KEYS (1000000), SECONDS (2, per timed run), ROUNDS (3, median reported),
// ERROR_PERCENT (2), THREADS (2), WORKLOADS ("memory,mix,shield,state"; a subset, e.g. to profile one;
// "statefile" writes a state file instead, see the end of this file).

import BreakwaterCore
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - settings

func setting(_ name: String, _ fallback: Double) -> Double {
    guard let text = ProcessInfo.processInfo.environment[name], !text.isEmpty else { return fallback }
    guard let value = Double(text), value >= 0 else {
        FileHandle.standardError.write(Data("\(name) must be a non-negative number, got '\(text)'\n".utf8))
        exit(2)
    }
    return value
}

let keyCount = Int(setting("KEYS", 1_000_000))
let seconds = setting("SECONDS", 2)
let rounds = max(1, Int(setting("ROUNDS", 3)))
let errorPercent = setting("ERROR_PERCENT", 2)
let threadCount = max(1, Int(setting("THREADS", 2)))
let maxClients = 1_000_000
let policy = BackoffPolicy()
let workloads = Set((ProcessInfo.processInfo.environment["WORKLOADS"] ?? "memory,mix,shield,state")
    .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })

// MARK: - helpers

/// xorshift64*: a fast per-thread generator for key picks and outcomes.
struct FastRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    @inline(__always)
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Resident bytes of this process, from /proc/self/statm (second field, in pages).
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    let mid = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

func format(_ value: Double, _ decimals: Int = 2) -> String {
    String(format: "%.\(decimals)f", value)
}

/// The key of client number `i` of a key space: a bijective scramble of `i` (the SplitMix64
/// finalizer), so the numbers 0..<n give n distinct, random-looking 64-bit values, as the keyed
/// hash of n client addresses would. Computed, not stored: a table of a million keys would add a
/// cache miss of its own to every operation, which a real request does not pay.
struct KeySpace: Sendable {
    let count: Int
    let seed: UInt64

    @inline(__always)
    func key(_ i: Int) -> ClientKey {
        var z = UInt64(truncatingIfNeeded: i) &+ seed
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return ClientKey(value: z ^ (z >> 31))
    }
}

func makeTracker() -> ErrorTracker<SystemClock> {
    ErrorTracker(maxClients: maxClients, clock: SystemClock(), seed: UInt64.random(in: 1...UInt64.max))
}

/// Every key recorded once as an error, so each holds an entry.
func fill(_ tracker: ErrorTracker<SystemClock>, _ keys: KeySpace) {
    for i in 0..<keys.count {
        _ = tracker.record(keys.key(i), outcome: .error, policy: policy, routeIndex: 0, upstreamRetryAfter: nil)
    }
}

// MARK: - timed loops

struct ThreadResult {
    var operations = 0
    var records = 0
    var rejects = 0
    var cpuSeconds = 0.0
}

enum Workload {
    case mix
    case shield
}

/// One thread's loop until `deadline` (monotonic seconds). Checks the clock every 1024 requests.
func runLoop(_ workload: Workload, tracker: ErrorTracker<SystemClock>, keys: KeySpace, seed: UInt64,
             deadline: Double) -> ThreadResult {
    var rng = FastRandom(seed: seed)
    // An error when the low 32 bits fall under this.
    let errorThreshold = UInt64(min(100, errorPercent) / 100 * 4_294_967_296)
    var result = ThreadResult()
    let cpu0 = threadCPUSeconds()
    let n = UInt64(keys.count)
    while monotonicSeconds() < deadline {
        for _ in 0..<1024 {
            let r = rng.next()
            let key = keys.key(Int(truncatingIfNeeded: r.multipliedFullWidth(by: n).high))
            let verdict = tracker.check(key, policy: policy)
            switch workload {
            case .shield:
                if case .reject = verdict { result.rejects += 1 }
            case .mix:
                switch verdict {
                case .forward, .probe:
                    let outcome: Outcome = (r & 0xFFFF_FFFF) < errorThreshold ? .error : .success
                    _ = tracker.record(key, outcome: outcome, policy: policy, routeIndex: 0,
                                       upstreamRetryAfter: nil)
                    result.records += 1
                case .reject:
                    result.rejects += 1
                }
            }
        }
        result.operations += 1024
    }
    result.cpuSeconds = threadCPUSeconds() - cpu0
    return result
}

/// Runs `threads` threads for `seconds` on one tracker; returns their results and the wall time.
func timedRun(_ workload: Workload, tracker: ErrorTracker<SystemClock>, keys: KeySpace, threads: Int,
              seconds: Double, seed: UInt64) -> (results: [ThreadResult], wall: Double) {
    final class Box: @unchecked Sendable { // written under `lock`, read after `done`
        var results: [ThreadResult]
        init(results: [ThreadResult]) { self.results = results }
    }
    let box = Box(results: Array(repeating: ThreadResult(), count: threads))
    let lock = NSLock()
    let done = DispatchGroup()
    let start = monotonicSeconds() + 0.05
    let deadline = start + seconds
    for t in 0..<threads {
        done.enter()
        let thread = Thread {
            while monotonicSeconds() < start {}
            let r = runLoop(workload, tracker: tracker, keys: keys, seed: seed &+ UInt64(t) &* 0x9E37_79B9, deadline: deadline)
            lock.lock()
            box.results[t] = r
            lock.unlock()
            done.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    done.wait()
    return (box.results, monotonicSeconds() - start)
}

// MARK: - main

let cpus = ProcessInfo.processInfo.activeProcessorCount
let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
print("tracker core benchmark: \(keyCount) keys, max_clients \(maxClients), default BackoffPolicy, SystemClock")
print("\(cpus) CPUs; load average at start: \(load); \(rounds) rounds of \(format(seconds, 1)) s per run, median shown")
print("")

// memory: only the tracker's growth is counted (the keys are computed, not stored).
var rssPerClient = Double.nan, tablePerClient = Double.nan
if workloads.contains("memory") {
    let memoryKeys = KeySpace(count: keyCount, seed: 0xB0BA_CAFE)
    let rssBefore = residentBytes()
    let memoryTracker = makeTracker()
    fill(memoryTracker, memoryKeys)
    let rssAfter = residentBytes()
    let tracked = memoryTracker.trackedCount
    let tableBytes = memoryTracker.tableBytes
    rssPerClient = Double(rssAfter - rssBefore) / Double(max(1, tracked))
    tablePerClient = Double(tableBytes) / Double(max(1, tracked))
    print("memory: \(tracked) clients tracked, \(memoryTracker.evictions) evicted")
    print("  RSS growth      \(format(Double(rssAfter - rssBefore) / 1_048_576, 1)) MiB = \(format(rssPerClient, 1)) bytes per tracked client")
    print("  tableBytes      \(format(Double(tableBytes) / 1_048_576, 1)) MiB = \(format(tablePerClient, 1)) bytes per tracked client")
    if memoryTracker.evictions > 0 {
        print("  (max_clients is split evenly over the shards and keys spread unevenly, so a few shards fill")
        print("   up and evict before the table holds max_clients keys)")
    }
    print("")
}

struct Row {
    var name: String
    var threads: Int
    var perCoreCPU: Double // operations per thread-CPU-second
    var perCoreWall: Double // operations per wall second / threads
    var total: Double // operations per wall second, all threads
    var recordShare: Double
    var rejectShare: Double
    var cpuShare: Double // thread CPU seconds / (threads * wall)
    var tracked: Int
}

func measure(_ workload: Workload, name: String, threads: Int, keys: KeySpace,
             prepare: (ErrorTracker<SystemClock>) -> Void) -> Row {
    var perCPU: [Double] = [], perWall: [Double] = [], totals: [Double] = []
    var recordShares: [Double] = [], rejectShares: [Double] = [], cpuShares: [Double] = []
    var trackedCounts: [Double] = []
    for round in 0..<rounds {
        let tracker = makeTracker()
        prepare(tracker)
        // Warm-up: reach the steady state of the table (mix) and fault in every page.
        _ = timedRun(workload, tracker: tracker, keys: keys, threads: threads, seconds: min(1, seconds / 2),
                     seed: 77 &+ UInt64(round))
        let (results, wall) = timedRun(workload, tracker: tracker, keys: keys, threads: threads,
                                       seconds: seconds, seed: 1_000 &+ UInt64(round))
        let ops = Double(results.reduce(0) { $0 + $1.operations })
        let cpu = results.reduce(0) { $0 + $1.cpuSeconds }
        perCPU.append(ops / max(cpu, 1e-9))
        totals.append(ops / wall)
        perWall.append(ops / wall / Double(threads))
        recordShares.append(Double(results.reduce(0) { $0 + $1.records }) / ops)
        rejectShares.append(Double(results.reduce(0) { $0 + $1.rejects }) / ops)
        cpuShares.append(cpu / (wall * Double(threads)))
        trackedCounts.append(Double(tracker.trackedCount))
    }
    return Row(name: name, threads: threads, perCoreCPU: median(perCPU), perCoreWall: median(perWall),
               total: median(totals), recordShare: median(recordShares), rejectShare: median(rejectShares),
               cpuShare: median(cpuShares), tracked: Int(median(trackedCounts)))
}

let keys = KeySpace(count: keyCount, seed: 0x5EED)
var rows: [Row] = []
for threads in Array(Set([1, threadCount])).sorted() {
    if workloads.contains("mix") {
        rows.append(measure(.mix, name: "mix (\(format(errorPercent, 0)) % errors)", threads: threads, keys: keys) { _ in })
    }
    if workloads.contains("shield") {
        rows.append(measure(.shield, name: "shield (all tracked)", threads: threads, keys: keys) { fill($0, keys) })
    }
}

func millions(_ v: Double) -> String { format(v / 1e6, 2) }
func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - text.count))
    return left ? text + fill : fill + text
}

func line(_ cells: [String]) -> String {
    let widths = [22, 8, 12, 12, 12, 9, 9, 9, 10]
    return zip(cells, widths).enumerated().map { i, pair in pad(pair.0, pair.1, left: i == 0) }.joined(separator: " ")
}

print("throughput, M operations per second (an operation: check, and record when forwarded)")
print(line(["workload", "threads", "per core", "per core", "all threads", "records", "rejects", "CPU", "tracked"]))
print(line(["", "", "(CPU time)", "(wall)", "(wall)", "%", "%", "share %", "at end"]))
for row in rows {
    print(line([row.name, String(row.threads), millions(row.perCoreCPU), millions(row.perCoreWall), millions(row.total),
                format(100 * row.recordShare, 1), format(100 * row.rejectShare, 1), format(100 * row.cpuShare, 0),
                String(row.tracked)]))
}
let loadEnd = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
print("")
print("per core (CPU time): operations / CPU seconds of the benchmark threads; per core (wall): operations / wall seconds / threads.")
print("CPU share: the threads' CPU time / (threads x wall time); under 100 % means other processes took CPU (disturbed wall figures).")
print("load average at end: \(loadEnd)")
print("")
for row in rows where row.name.hasPrefix("mix") {
    print("target: >= 10 M check+record per second per core with 1 M keys: mix, \(row.threads) thread(s): \(millions(row.perCoreCPU)) M/s per core: \(row.perCoreCPU >= 10e6 ? "met" : "NOT met")")
}
if workloads.contains("memory") {
    print("target: <= 96 bytes per tracked client: RSS growth \(format(rssPerClient, 1)), tableBytes \(format(tablePerClient, 1)): \(rssPerClient <= 96 && tablePerClient <= 96 ? "met" : "NOT met")")
}

// MARK: - state

/// Latencies of `check` calls on tracked keys, in nanoseconds, from one thread until `stop` is set.
final class CheckProbe: @unchecked Sendable {
    private let lock = NSLock()
    private var latencies: [Int64] = []
    private var stopped = false
    private let done = DispatchSemaphore(value: 0)

    init(tracker: ErrorTracker<SystemClock>, keys: KeySpace) {
        let thread = Thread { [self] in
            var random = FastRandom(seed: 99)
            var local: [Int64] = []
            local.reserveCapacity(1 << 22)
            var ts = timespec()
            while true {
                if local.count & 1023 == 0 && isStopped { break }
                clock_gettime(CLOCK_MONOTONIC, &ts)
                let start = Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
                _ = tracker.check(keys.key(Int(random.next() % UInt64(keys.count))), policy: policy)
                clock_gettime(CLOCK_MONOTONIC, &ts)
                local.append(Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec) - start)
            }
            lock.lock(); latencies = local; lock.unlock()
            done.signal()
        }
        thread.start()
    }

    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    /// Stops the thread; returns (calls, 99.9th percentile, longest) in microseconds.
    func stop() -> (Int, Double, Double) {
        lock.lock(); stopped = true; lock.unlock()
        done.wait()
        let sorted = latencies.sorted()
        guard !sorted.isEmpty else { return (0, .nan, .nan) }
        let p999 = sorted[min(sorted.count - 1, sorted.count * 999 / 1000)]
        return (sorted.count, Double(p999) / 1e3, Double(sorted.last!) / 1e3)
    }
}

func wallNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// Writes `bytes` to `path` as the server does: a temporary file, fsync, rename, fsync of the directory.
func writeAtomically(_ path: String, _ bytes: [UInt8]) {
    let temporary = path + ".tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    precondition(fd >= 0, "cannot create \(temporary)")
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
        precondition(n > 0, "cannot write \(temporary)")
        done += n
    }
    precondition(fsync(fd) == 0 && close(fd) == 0 && rename(temporary, path) == 0)
    let dir = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY)
    precondition(dir >= 0 && fsync(dir) == 0)
    close(dir)
}

if workloads.contains("state") {
    let stateKeys = KeySpace(count: keyCount, seed: 0x57A7E)
    let tracker = makeTracker()
    fill(tracker, stateKeys)
    let fingerprint = StateFile.fingerprint(of: KeyedHasher(secret: "tracker-bench-hash-key"))
    let directory = NSTemporaryDirectory() + "tracker-bench-state-\(getpid())"
    try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let path = directory + "/bench.state"
    defer { try? FileManager.default.removeItem(atPath: directory) }
    print("state: \(tracker.trackedCount) tracked clients, every one blocked once (the default policy)")
    var exportTimes: [Double] = [], encodeTimes: [Double] = [], writeTimes: [Double] = [], loadTimes: [Double] = []
    var during: [(Int, Double, Double)] = [], quiet: [(Int, Double, Double)] = []
    var saved = 0, size = 0, loaded = 0
    for _ in 0..<rounds {
        let probe = CheckProbe(tracker: tracker, keys: stateKeys)
        usleep(20_000)
        let t0 = monotonicSeconds()
        let clocks = ClockPair(monotonic: SystemClock().nanoseconds(), wall: wallNanoseconds())
        let clients = tracker.exportState(clocks: clocks)
        let t1 = monotonicSeconds()
        let bytes = StateFile.encode(clients, fingerprint: fingerprint, writtenAt: clocks.wall)
        let t2 = monotonicSeconds()
        during.append(probe.stop())
        writeAtomically(path, bytes)
        let t3 = monotonicSeconds()
        // As long a stretch of checks with no save, for comparison.
        let calm = CheckProbe(tracker: tracker, keys: stateKeys)
        usleep(useconds_t(max(20_000, (t2 - t0) * 1e6)))
        quiet.append(calm.stop())
        let read = try! [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let fresh = makeTracker()
        let t4 = monotonicSeconds()
        loaded = try! fresh.loadState(read, fingerprint: fingerprint,
                                      clocks: ClockPair(monotonic: SystemClock().nanoseconds(), wall: wallNanoseconds())).taken
        let t5 = monotonicSeconds()
        exportTimes.append(t1 - t0); encodeTimes.append(t2 - t1); writeTimes.append(t3 - t2); loadTimes.append(t5 - t4)
        saved = clients.count
        size = bytes.count
    }
    let ms = { (v: [Double]) in format(median(v) * 1e3, 1) }
    print("  save: \(saved) entries, \(format(Double(size) / 1_048_576, 1)) MiB; export (shard by shard) \(ms(exportTimes)) ms, "
          + "encode \(ms(encodeTimes)) ms, write + fsync + rename \(ms(writeTimes)) ms; "
          + "in all \(format((median(exportTimes) + median(encodeTimes) + median(writeTimes)) * 1e3, 1)) ms")
    print("  load: read back and \(loaded) entries imported into a fresh tracker in \(ms(loadTimes)) ms")
    func describe(_ runs: [(Int, Double, Double)]) -> String {
        "p99.9 \(format(median(runs.map(\.1)), 1)) us, longest \(format(median(runs.map(\.2)), 1)) us "
            + "(\(Int(median(runs.map { Double($0.0) }))) checks)"
    }
    print("  check latency on another thread during export and encode: \(describe(during))")
    print("  check latency on another thread, no save running:        \(describe(quiet))")
    print("")
}

// MARK: - statefile

// Not a measurement: `WORKLOADS=statefile STATE_FILE=PATH HASH_KEY=SECRET` writes PATH, a state
// file of KEYS clients blocked once (as `fill` leaves them; kept until reset_after, 15 min), hashed
// under SECRET, for bench/state/save.sh to start the proxy on a full table.
if workloads.contains("statefile") {
    let environment = ProcessInfo.processInfo.environment
    guard let path = environment["STATE_FILE"], let secret = environment["HASH_KEY"] else {
        fatalError("statefile: set STATE_FILE and HASH_KEY")
    }
    let tracker = makeTracker()
    fill(tracker, KeySpace(count: keyCount, seed: 0x5A7EF11E))
    let (bytes, count) = tracker.saveState(fingerprint: StateFile.fingerprint(of: KeyedHasher(secret: secret)),
                                           clocks: ClockPair(monotonic: SystemClock().nanoseconds(), wall: wallNanoseconds()))
    writeAtomically(path, bytes)
    print("statefile: \(count) clients, \(bytes.count) bytes written to \(path)")
}
