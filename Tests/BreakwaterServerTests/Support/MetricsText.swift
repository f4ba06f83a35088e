/// The value of one series in Prometheus text, e.g. `breakwater_requests_total{route="a",outcome="forwarded"}`.
func metricValue(_ text: String, _ series: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1))
    }
    return nil
}
