#!/usr/bin/env python3
"""Load test of examples/server (benchmarks/load_server.sh starts the server and runs this).

For each client count, that many threads send completion requests over loopback, one after
another, for a bounded number of requests and time (one client runs again at the end; speedups are
against the faster one-client run). Half the requests are steered, half sample
with a seed. Every response must equal the same request run alone ("solo": true, generate()),
fetched once per distinct request before the timed runs. Prints tokens/s and latency percentiles;
exits 1 if any response differed or failed. Python 3 standard library only.
"""
import argparse
import http.client
import json
import random
import sys
import threading
import time


def post(port, body, timeout):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = json.loads(response.read())
        return response.status, payload
    finally:
        conn.close()


def make_requests(count, vocab, d_model, n_layers, max_tokens, seed):
    rng = random.Random(seed)
    direction = [rng.gauss(0.0, 1.0) for _ in range(d_model)]
    requests = []
    for i in range(count):
        body = {
            "prompt_tokens": [rng.randrange(vocab) for _ in range(8 + i % 9)],
            "max_tokens": max_tokens,
            "stop": [],
        }
        if i % 2 == 1:
            body["steering"] = {"vector": direction, "layers": [(3 + i % 4) % n_layers], "alpha": 2.0 + i % 3}
        if i % 4 >= 2:
            body.update({"temperature": 0.8, "top_k": 40, "seed": 1000 + i})
        requests.append(body)
    return requests


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, int(round(p / 100.0 * (len(ordered) - 1)))))
    return ordered[k]


def run_clients(port, clients, requests, expect, per_client, deadline_s, timeout):
    latencies, mismatches, failures = [], [], []
    tokens = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + deadline_s

    def client(c):
        for j in range(per_client):
            if time.monotonic() > stop_at:
                return
            i = (c * per_client + j) % len(requests)
            start = time.monotonic()
            try:
                status, payload = post(port, requests[i], timeout)
            except Exception as e:  # a dead connection is a failure of this request, reported below
                with lock:
                    failures.append((i, repr(e)))
                continue
            elapsed = time.monotonic() - start
            with lock:
                if status != 200:
                    failures.append((i, payload))
                    continue
                latencies.append(elapsed)
                tokens[0] += len(payload["tokens"])
                if payload["tokens"] != expect[i]:
                    mismatches.append(i)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    return {"clients": clients, "requests": len(latencies), "tokens": tokens[0], "seconds": wall,
            "tokens_per_s": tokens[0] / wall if wall > 0 else 0.0,
            "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
            "mismatches": mismatches, "failures": failures}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", default="1,4,8,16")
    parser.add_argument("--per-client", type=int, default=3, help="requests each client sends")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per client count at most")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per request at most")
    args = parser.parse_args()

    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=args.timeout)
    conn.request("GET", "/v1/models")
    model = json.loads(conn.getresponse().read())["data"][0]
    conn.close()
    counts = [int(c) for c in args.clients.split(",")]
    distinct = max(counts) * args.per_client
    requests = make_requests(distinct, model["vocab_size"], model["d_model"], model["n_layers"], args.max_tokens, 7)

    # The reference of every request: run alone, one at a time.
    expect = []
    for body in requests:
        status, payload = post(args.port, dict(body, solo=True), args.timeout)
        if status != 200:
            print(f"solo run failed: {payload}", file=sys.stderr)
            return 1
        expect.append(payload["tokens"])

    print(f"model {model['id']}: {model['n_layers']} layers, d_model {model['d_model']}, "
          f"{args.max_tokens} new tokens per request, {args.per_client} requests per client "
          f"(half steered, half seeded sampling)")
    # One client runs first and again last: the shared machine's drift hits the baseline too, and
    # the speedups are against the faster of the two runs.
    results = []
    bad = 0
    for clients in counts + ([1] if counts[0] == 1 and len(counts) > 1 else []):
        r = run_clients(args.port, clients, requests, expect, args.per_client, args.deadline, args.timeout)
        for i, why in r["failures"]:
            print(f"  request {i} failed: {why}", file=sys.stderr)
        bad += len(r["mismatches"]) + len(r["failures"])
        results.append(r)
    base = max(r["tokens_per_s"] for r in results if r["clients"] == counts[0])
    print(f"{'clients':>7} {'requests':>8} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'speedup':>8} "
          f"{'p50 s':>7} {'p99 s':>7} {'differing':>9}")
    for r in results:
        speedup = r["tokens_per_s"] / base if base else float("nan")
        print(f"{r['clients']:>7} {r['requests']:>8} {r['tokens']:>7} {r['seconds']:>8.2f} "
              f"{r['tokens_per_s']:>9.1f} {speedup:>7.2f}x {r['p50']:>7.2f} {r['p99']:>7.2f} "
              f"{len(r['mismatches']):>9}")
    sys.stdout.flush()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
