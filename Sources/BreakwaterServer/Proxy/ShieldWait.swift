/// A request whose shield verdict is still on its way (the shared tracker was asked). It holds
/// the connection's exchange slot meanwhile, so that a client leaving before the verdict is noticed:
/// its request is then neither answered nor forwarded, and a probe it was granted is given back.
final class ShieldWait: ClientExchange {
    /// The client closed the connection while the verdict was pending.
    private(set) var clientGone = false

    func clientClosed() { clientGone = true }

    func clientDrained() {}
}
