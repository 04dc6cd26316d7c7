#!/usr/bin/env python3
"""Seeds N signing keys through the API (bench/scale.sh): POST /v1/keys for seed-0 … seed-<N-1>,
over keep-alive connections from several threads. Each key goes the real way: material made
inside the vault, its DEK wrapped by the HSM, the sealed record stored, the intent and outcome
audited. A key that exists already (a rerun) counts as seeded. Prints one line:
`seeded N keys in S s (R keys/s)`. The token comes from the environment (BENCH_TOKEN), never
argv.

    seed.py BASE_URL COUNT [THREADS]
"""
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse


def seed(base, names, token, failures):
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    for name in names:
        body = json.dumps({"name": name, "algorithm": "hmac-sha256"})
        for attempt in range(5):
            try:
                conn.request("POST", "/v1/keys", body, headers)
                response = conn.getresponse()
                response.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
                if attempt == 4:
                    raise
        if response.status not in (201, 409):
            failures.append((name, response.status))
            return


def main():
    base, count = sys.argv[1], int(sys.argv[2])
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    token = os.environ["BENCH_TOKEN"]
    names = ["seed-%d" % i for i in range(count)]
    failures = []
    workers = [
        threading.Thread(target=seed, args=(base, names[t::threads], token, failures))
        for t in range(threads)
    ]
    started = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - started
    if failures:
        print("seed.py: a create failed: %s answered %d" % failures[0], file=sys.stderr)
        sys.exit(1)
    print("seeded %d keys in %.1f s (%.0f keys/s)" % (count, elapsed, count / elapsed))


if __name__ == "__main__":
    main()
