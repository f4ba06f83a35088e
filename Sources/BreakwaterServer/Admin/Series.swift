import BreakwaterCore
import FoundationEssentials

/// The last 15 minutes of the proxy at one-second steps, for `GET /stats/series` and the page.
///
/// A fixed ring of `capacity` rows allocated once; a sample writes one row in place (the requests
/// by outcome, upstream responses by class and windows imposed during the second, as differences of
/// the running totals, and the tracked and blocked clients at its end), so memory never grows and a
/// sample costs the same whatever the history. Used only on the first worker's thread: the
/// sampler and the admin listener both run there, so it takes no lock.
final class Series: @unchecked Sendable {
    /// Rows kept: 15 minutes of seconds.
    static let capacity = 900
    /// The columns of a row, in order: the second (Unix time), requests per outcome, upstream
    /// responses per class, windows imposed, then the blocked and tracked clients at its end.
    static let columns = ["t"] + RequestOutcome.allCases.map(\.rawValue) + UpstreamClass.allCases.map(\.rawValue)
        + ["windows", "blocked", "tracked"]
    private static let width = columns.count
    /// The running totals that rows are differences of: outcomes, classes, windows.
    private static let totalsWidth = RequestOutcome.allCases.count + UpstreamClass.allCases.count + 1

    private var rows: [Int]
    private var previous: [Int]
    private var current: [Int]
    /// The slot the next row goes to, and how many rows are held.
    private var next = 0
    private(set) var count = 0

    /// An empty ring; the running totals start at zero with it, as the process's do.
    init() {
        rows = [Int](repeating: 0, count: Self.capacity * Self.width)
        previous = [Int](repeating: 0, count: Self.totalsWidth)
        current = previous
    }

    /// Records the second `time` (Unix seconds): what the running `totals` added since the last
    /// sample (since start for the first), and the tracker's counts now.
    func sample(time: Int, totals: Totals, tracked: Int, blocked: Int) {
        var i = 0
        for outcome in RequestOutcome.allCases {
            current[i] = totals.value(outcome)
            i += 1
        }
        for upstreamClass in UpstreamClass.allCases {
            current[i] = totals.value(upstreamClass)
            i += 1
        }
        current[i] = totals.windowsImposed
        defer { swap(&previous, &current) }
        let base = next * Self.width
        rows[base] = time
        for j in 0..<Self.totalsWidth { rows[base + 1 + j] = max(0, current[j] &- previous[j]) }
        rows[base + 1 + Self.totalsWidth] = blocked
        rows[base + 2 + Self.totalsWidth] = tracked
        next = (next + 1) % Self.capacity
        count = min(count + 1, Self.capacity)
    }

    /// The rows after `since` (Unix seconds; 0 for all), oldest first, as compact JSON:
    /// `{"step":1,"columns":[...],"points":[[t,...],...]}`.
    func json(since: Int) -> [UInt8] {
        var out = Array(#"{"step":1,"columns":["#.utf8)
        for (i, name) in Self.columns.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out += Array("\"\(name)\"".utf8)
        }
        out += Array(#"],"points":["#.utf8)
        var first = true
        let oldest = (next - count + Self.capacity) % Self.capacity
        for k in 0..<count {
            let base = ((oldest + k) % Self.capacity) * Self.width
            guard rows[base] > since else { continue }
            out += Array((first ? "[" : ",[").utf8)
            first = false
            for j in 0..<Self.width {
                if j > 0 { out.append(UInt8(ascii: ",")) }
                out += Array(String(rows[base + j]).utf8)
            }
            out.append(UInt8(ascii: "]"))
        }
        out += Array("]}\n".utf8)
        return out
    }
}

extension Series {
    /// Wall-clock time, seconds since the Unix epoch (the series is labelled with Unix seconds).
    static func wallClock() -> Double {
        Date().timeIntervalSince1970
    }

    /// How long until just after the next whole wall-clock second, so each sample lands in its own second.
    static func delayToNextSecond() -> Duration {
        let now = wallClock()
        let fraction = now - now.rounded(.down)
        return .nanoseconds(Int64((1 - fraction) * 1e9) + 5_000_000)
    }
}
