import BreakwaterCore

/// A route's window histogram hears of the windows its errors imposed, from whichever store decided them.
extension RouteMetrics: WindowObserver {
    func windowImposed(_ window: Duration) {
        backoffWindow.record(window)
        totals.addWindow()
    }
}
