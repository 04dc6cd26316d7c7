"""Latency of refused requests for an existing and a missing key (bench/oracle.sh).

Requests alternate ping / existing / missing so drift hits all three alike, each on a new
connection (a refusal answered before its body is read closes its connection, so reusing one
would put a connect into some samples and not others; the connect is in every sample). Prints the median and the 90th percentile of each in microseconds, the
difference of the refused medians, and the ratios to ping. Inputs from the environment
(never argv): BENCH_BASE, BENCH_TOKEN, BENCH_EXISTING, BENCH_MISSING, BENCH_REQUESTS.
"""

import http.client
import os
import statistics
import sys
import time
import urllib.parse


def main() -> int:
    base = urllib.parse.urlsplit(os.environ["BENCH_BASE"])
    token = os.environ["BENCH_TOKEN"]
    n = int(os.environ.get("BENCH_REQUESTS", "3000"))
    conn = http.client.HTTPConnection(base.hostname, base.port)
    body = b'{"message":"bQ=="}'
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    runs = {
        "ping": ("GET", "/v1/sys/ping", None, {}, 200),
        "existing": ("POST", f"/v1/keys/{os.environ['BENCH_EXISTING']}/sign", body, headers, 403),
        "missing": ("POST", f"/v1/keys/{os.environ['BENCH_MISSING']}/sign", body, headers, 403),
    }
    samples = {name: [] for name in runs}
    for i in range(n + 200):
        for name, (method, path, data, hdrs, want) in runs.items():
            conn.close()
            start = time.perf_counter_ns()
            conn.request(method, path, body=data, headers=hdrs)
            response = conn.getresponse()
            payload = response.read()
            took = time.perf_counter_ns() - start
            if response.status != want:
                print(f"oracle: {name} answered {response.status}: {payload[:200]!r}", file=sys.stderr)
                return 1
            if i >= 200:  # warm-up: caches filled, connection settled
                samples[name].append(took / 1000)
    stats = {}
    for name, values in samples.items():
        values.sort()
        stats[name] = (statistics.median(values), values[int(len(values) * 0.9)])
        print(f"{name:9s} median {stats[name][0]:8.1f} us   p90 {stats[name][1]:8.1f} us   ({len(values)} requests)")
    diff = stats["existing"][0] - stats["missing"][0]
    print(f"refused existing - missing, medians: {diff:+.1f} us")
    for name in ("existing", "missing"):
        print(f"RATIO refused-{name}/ping = {stats[name][0] / stats['ping'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
