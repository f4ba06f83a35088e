-- wrk: print the run's totals as one JSON line (requests, errors by kind, latency).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.2f,"bytes":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"non_2xx_3xx":%d,"timeouts":%d,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
