import BreakwaterCore

/// A request whose shield verdict is still on its way (the shared tracker was asked). It holds
/// the connection's exchange slot meanwhile, so that a client leaving before the verdict is noticed:
/// its request is then neither answered nor forwarded, and a probe it was granted is given back.
final class ShieldWait: ClientExchange {
    /// The client closed the connection while the verdict was pending.
    private(set) var clientGone = false

    func clientClosed() { clientGone = true }

    func clientDrained() {}
}

/// A shield verdict given when a request's head arrived, held while its body is read. A probe
/// whose client leaves before the body is complete is given back.
final class HeldVerdict: ClientExchange {
    let verdict: Verdict
    private let key: ClientKey
    private let store: TrackerStore

    init(verdict: Verdict, key: ClientKey, store: TrackerStore) {
        self.verdict = verdict
        self.key = key
        self.store = store
    }

    func clientClosed() {
        if verdict == .probe { store.abandonProbe(key) }
    }

    func clientDrained() {}
}
