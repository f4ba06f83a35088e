import Foundation
import Testing
import BreakwaterCore
@testable import BreakwaterServer

/// Work that other threads hand a worker (a reload, a signal, a stop) goes through its inbox, since
/// libevent runs without its own locking: every block runs once, on the worker's loop thread, in
/// the order each thread posted it, however the posts interleave with the loop's wake-ups.
@Suite struct WorkerInboxTests {
    @Test func blocksPostedFromManyThreadsAllRunOnceOnTheLoopInOrder() throws {
        let worker = try Worker(index: 0)
        worker.start(name: "inbox-test")
        let threads = 4
        let posts = 5_000
        let seen = LockedValue<[[Int]]>(Array(repeating: [], count: threads))
        let offLoop = LockedValue(0)
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            for post in 0..<posts {
                worker.execute {
                    if !worker.isLoopThread { offLoop.withLock { $0 += 1 } }
                    seen.withLock { $0[thread].append(post) }
                }
            }
        }
        let ran = { seen.withLock { $0.map(\.count).reduce(0, +) } }
        #expect(eventually(10) { ran() == threads * posts }, "\(ran()) of \(threads * posts) ran")
        #expect(seen.withLock { $0 } == Array(repeating: Array(0..<posts), count: threads))
        #expect(offLoop.withLock { $0 } == 0)

        // A delayed block posted from another thread waits its delay, on the loop's thread.
        let posted = Date()
        let delayed = LockedValue<(elapsed: TimeInterval, onLoop: Bool)?>(nil)
        DispatchQueue.global().async {
            worker.schedule(after: .milliseconds(300)) {
                let onLoop = worker.isLoopThread
                delayed.withLock { $0 = (Date().timeIntervalSince(posted), onLoop) }
            }
        }
        #expect(eventually(5) { delayed.withLock { $0 } != nil })
        let result = delayed.withLock { $0 }
        #expect(result.map { $0.elapsed >= 0.29 && $0.onLoop } == true, "\(String(describing: result))")

        // Draining is posted too: the loop ends only if it runs.
        worker.drain(grace: .seconds(1))
        #expect(worker.join(within: 5), "the posted drain did not end the loop")
    }
}
