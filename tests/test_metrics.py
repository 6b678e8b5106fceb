"""test_metrics.py: Prometheus metrics as a scraper sees them (run by
tests/test_metrics.sh). Real nodes on ephemeral ports: zim-server with
--metrics, and a cluster of zim-router, zim-store, zim-broker (each with
--metrics) and zim-gateway (its /metrics on the client port). Every scrape
is parsed by prometheus_client's text parser; histograms must have
ascending le, cumulative buckets, +Inf equal to _count, and a _sum in
range. Sends through zim-cli must move the counters and histograms; a
wrong path gets 404, garbage 400 or a close, each with a log line, and
the node keeps serving.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

BUILD = os.environ.get("ZIM_BUILD", ".")
results = {"pass": 0, "fail": 0}


def ok(cond, name, detail=""):
    if cond:
        results["pass"] += 1
        print("ok - " + name)
    else:
        results["fail"] += 1
        print("not ok - " + name)
        if detail:
            print("    " + str(detail)[:2000])
    return cond


def wait_for(pred, timeout=15.0, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


class Node:
    """One node program in the background, its log in dir/NAME.log."""

    def __init__(self, workdir, name, program, args):
        self.log = os.path.join(workdir, name + ".log")
        self.out = open(self.log, "w")
        self.proc = subprocess.Popen([os.path.join(BUILD, program)] + args,
                                     stdout=self.out, stderr=subprocess.STDOUT)
        self.ready = wait_for(lambda: self.line(" ready: "))
        if not self.ready:
            print("# %s did not start:\n%s" % (name, self.text()))
            raise SystemExit(1)

    def text(self):
        with open(self.log) as f:
            return f.read()

    def line(self, pattern):
        for line in self.text().splitlines():
            if pattern in line:
                return line
        return None

    def field(self, key):
        m = re.search(r" %s=(\S+)" % key, self.ready)
        return m.group(1) if m else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def scrape(url):
    """The text at url and its families by name (parsed)."""
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        ctype = r.headers.get("Content-Type", "")
        text = r.read().decode()
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def value(fams, name, node, suffix=""):
    """The sample name+suffix of family name labelled node (None if none)."""
    fam = fams.get(name)
    if not fam:
        return None
    for s in fam.samples:
        if s.name == name + suffix and s.labels.get("node") == node:
            return s.value
    return None


def check_families(fams, where):
    """Every family typed, counters named *_total, histograms consistent."""
    problems = []
    for fam in fams.values():
        if fam.type not in ("counter", "gauge", "histogram"):
            problems.append("%s: type %s" % (fam.name, fam.type))
        if not fam.samples:
            problems.append("%s: no samples" % fam.name)
        if fam.type == "counter":
            for s in fam.samples:
                if not s.name.endswith("_total") or s.value < 0:
                    problems.append("%s: counter sample %s %s" % (fam.name, s.name, s.value))
        if fam.type != "histogram":
            continue
        nodes = {s.labels.get("node") for s in fam.samples}
        for node in nodes:
            buckets = [(float(s.labels["le"]), s.value) for s in fam.samples
                       if s.name == fam.name + "_bucket" and s.labels.get("node") == node]
            count = value(fams, fam.name, node, "_count")
            total = value(fams, fam.name, node, "_sum")
            les = [le for le, _ in buckets]
            counts = [c for _, c in buckets]
            if les != sorted(les) or les[-1] != float("inf") or len(les) < 2:
                problems.append("%s %s: le not ascending to +Inf: %s" % (fam.name, node, les))
            if counts != sorted(counts):
                problems.append("%s %s: buckets not cumulative: %s" % (fam.name, node, counts))
            if count is None or total is None or counts[-1] != count:
                problems.append("%s %s: +Inf %s != _count %s" % (fam.name, node, counts[-1], count))
            if total is not None and count is not None:
                # The sum lies between what the buckets allow.
                low = sum(les[i - 1] * (counts[i] - counts[i - 1]) for i in range(1, len(les) - 1))
                high = sum(les[i] * (counts[i] - (counts[i - 1] if i else 0))
                           for i in range(len(les) - 1))
                inf_n = counts[-1] - counts[-2]
                if total < low * 0.999 - 1e-9 or (inf_n == 0 and total > high * 1.001 + 1e-9):
                    problems.append("%s %s: _sum %s outside [%s, %s]" % (fam.name, node, total,
                                                                         low, high))
    return ok(not problems, "%s: every family well formed (%d families)" % (where, len(fams)),
              "; ".join(problems))


def complete(got):
    """True once got holds a whole HTTP response (headers, Content-Length)."""
    head, sep, body = got.partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: (\d+)", head)
    return bool(sep and m and len(body) >= int(m.group(1)))


def raw(port, data, timeout=8.0):
    """Sends data on a new connection; returns the answer, or what came
    back before the server closed."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    got = b""
    try:
        while not complete(got):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return got


def token(node, data, uid):
    env = dict(os.environ, ZIM_DATA=data)
    return subprocess.check_output([os.path.join(BUILD, "zimctl"), "-e", node.field("admin"),
                                    "token", "--app", "demo", "--uid", uid], env=env).decode().strip()


def send(ws, tok, to, text):
    """One send through zim-cli, retried while a cluster settles."""
    def attempt():
        r = subprocess.run([os.path.join(BUILD, "zim-cli"), "-u", ws, "-t", tok, "send", to, text,
                            "--timeout", "5"], capture_output=True, text=True)
        return r.returncode == 0 and '"seq":' in r.stdout
    return wait_for(attempt, timeout=20, step=0.2)


def port_of(url):
    return int(re.search(r":(\d+)/", url).group(1))


def test_server(work):
    data = os.path.join(work, "server")
    os.makedirs(data)
    srv = Node(work, "server", "zim-server",
               ["-p", "0", "--interface", "127.0.0.1", "-a", "tcp://127.0.0.1:*", "-d", data,
                "--metrics", "127.0.0.1:0"])
    try:
        url = srv.field("metrics")
        ws = srv.field("ws")
        ok(url and url.startswith("http://127.0.0.1:"), "zim-server ready line names the metrics URL",
           srv.ready)
        text, before = scrape(url)
        check_families(before, "zim-server before traffic")
        for role, node in (("store", "store-1"), ("router", "router-1"), ("broker", "broker-1"),
                           ("gateway", "gw-1")):
            ok(value(before, "zim_%s_bad_messages" % role, node, "_total") == 0,
               "zim-server exports the %s's counters (node=%s)" % (role, node))
        ok(before["zim_gateway_connections"].type == "gauge"
           and before["zim_broker_inflight"].type == "gauge"
           and before["zim_store_batch_max"].type == "gauge"
           and before["zim_store_push_added"].type == "counter",
           "levels are gauges, totals counters")
        ok(before["zim_broker_send_ack_seconds"].type == "histogram"
           and before["zim_store_commit_seconds"].type == "histogram"
           and before["zim_store_commit_write_seconds"].type == "histogram"
           and before["zim_store_batch_size"].type == "histogram"
           and before["zim_store_checkpoint_seconds"].type == "histogram",
           "the five histograms are there")
        ok(text.count("# TYPE zim_broker_sends_total ") == 1, "one TYPE line per family")

        alice = token(srv, data, "alice")
        bob = token(srv, data, "bob")
        # A listening bob: the connection gauges and routes move.
        listener = subprocess.Popen([os.path.join(BUILD, "zim-cli"), "-u", ws, "-t", bob, "listen",
                                     "--count", "5", "--timeout", "30"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        connected = wait_for(lambda: (value(scrape(url)[1], "zim_gateway_authed", "gw-1") or 0) >= 1
                             and (value(scrape(url)[1], "zim_router_routes", "router-1") or 0) >= 1)
        ok(connected, "gauges: an authenticated connection and its route are counted")
        n = 5
        sent = all(send(ws, alice, "bob", "metrics %d" % i) for i in range(n))
        ok(sent, "zim-cli sent %d messages" % n)
        out, _ = listener.communicate(timeout=30)
        ok(out.count('"from":"alice"') == n, "bob received them live", out)

        text, after = scrape(url)
        check_families(after, "zim-server after traffic")
        def moved(name, node, suffix, by):
            a = value(after, name, node, suffix) or 0
            b = value(before, name, node, suffix) or 0
            return ok(a - b >= by, "%s%s{node=%s} moved by >= %d (%s -> %s)" % (name, suffix, node, by,
                                                                                b, a))
        moved("zim_broker_sends", "broker-1", "_total", n)
        moved("zim_broker_acks", "broker-1", "_total", n)
        moved("zim_broker_deliveries", "broker-1", "_total", n)
        moved("zim_store_appended", "store-1", "_total", n)
        moved("zim_gateway_sends", "gw-1", "_total", n)
        moved("zim_broker_send_ack_seconds", "broker-1", "_count", n)
        moved("zim_store_commit_seconds", "store-1", "_count", 1)
        moved("zim_store_commit_write_seconds", "store-1", "_count", 1)
        ok(0 < (value(after, "zim_store_commit_write_seconds", "store-1", "_sum") or 0)
           <= (value(after, "zim_store_commit_seconds", "store-1", "_sum") or 0),
           "the commits' writes are timed, and are part of the commits' time")
        moved("zim_store_batch_size", "store-1", "_sum", n)
        # The write-ahead log's window is checkpointed within checkpoint_ms
        # (50) of the first write.
        ok(wait_for(lambda: (value(scrape(url)[1], "zim_store_checkpoints", "store-1", "_total")
                             or 0) >= 1
                    and (value(scrape(url)[1], "zim_store_checkpoint_seconds", "store-1", "_count")
                         or 0) >= 1),
           "the store checkpointed its window, and timed it")
        ok((value(after, "zim_broker_send_ack_seconds", "broker-1", "_sum") or 0) > 0,
           "send->ack latency has a positive sum")

        # The gateway's own /metrics, on its client port.
        gw_url = "http://127.0.0.1:%d/metrics" % port_of(ws + "/")
        _, gw = scrape(gw_url)
        check_families(gw, "gateway /metrics")
        ok((value(gw, "zim_gateway_sends", "gw-1", "_total") or 0) >= n
           and "zim_broker_sends" not in gw, "the gateway's port serves the gateway's metrics")

        # Bad requests: answered or closed, logged, and the node serves on.
        port = port_of(url)
        try:
            urllib.request.urlopen(url.replace("/metrics", "/nothing"), timeout=5)
            code = 200
        except urllib.error.HTTPError as e:
            code = e.code
        ok(code == 404, "a wrong path gets 404", code)
        got = raw(port, b"\x16\x03\x01garbage\r\n\r\n")
        ok(got == b"" or got.startswith(b"HTTP/1.1 400 "), "garbage gets 400 or a close", got[:80])
        got = raw(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        ok(got.startswith(b"HTTP/1.1 405 "), "POST gets 405", got[:80])
        # Half a request, then a scrape while it is still open.
        half = socket.create_connection(("127.0.0.1", port))
        half.sendall(b"GET /metr")
        text, again = scrape(url)
        half.close()
        ok((value(again, "zim_node_metrics_refused", "zim-server", "_total") or 0) >= 3,
           "refusals are counted")
        ok(wait_for(lambda: srv.line("refused (404)") and srv.line("refused (400)")),
           "refusals are logged", srv.text()[-2000:])
        ok(srv.proc.poll() is None, "zim-server still runs")
    finally:
        srv.stop()


def test_cluster(work):
    nodes = []
    try:
        def start(name, program, args):
            d = os.path.join(work, name)
            os.makedirs(d)
            n = Node(work, name, program, ["--name", name, "-d", d] + args)
            nodes.append(n)
            return n, d
        router, _ = start("router-1", "zim-router",
                          ["--bind", "tcp://127.0.0.1:*", "--metrics", "127.0.0.1:0"])
        r = router.field("bind")
        store, _ = start("store-1", "zim-store", ["--bind", "tcp://127.0.0.1:*", "-r", r,
                                                  "--metrics", "127.0.0.1:0", "--sync", "batch"])
        broker, _ = start("broker-1", "zim-broker", ["--bind", "tcp://127.0.0.1:*", "-r", r,
                                                     "--metrics", "127.0.0.1:0"])
        gw, gdata = start("gw-1", "zim-gateway", ["-p", "0", "--interface", "127.0.0.1", "-r", r,
                                                  "-a", "tcp://127.0.0.1:*"])
        ws = gw.field("ws")
        for n in (router, store, broker):
            ok(n.field("metrics"), "%s ready line names the metrics URL" % n.proc.args[0], n.ready)
        _, b0 = scrape(broker.field("metrics"))
        _, s0 = scrape(store.field("metrics"))
        check_families(b0, "zim-broker")
        check_families(s0, "zim-store")
        ok(set(f for f in b0 if f.startswith("zim_")) >= {"zim_broker_sends", "zim_broker_send_ack_seconds"}
           and not any(f.startswith("zim_store_") for f in b0), "zim-broker exports its own actor")
        alice = token(gw, gdata, "alice")
        n = 4
        ok(all(send(ws, alice, "carol", "cluster %d" % i) for i in range(n)),
           "zim-cli sent %d messages through the cluster" % n)
        _, b1 = scrape(broker.field("metrics"))
        _, s1 = scrape(store.field("metrics"))
        _, r1 = scrape(router.field("metrics"))
        check_families(b1, "zim-broker after traffic")
        check_families(s1, "zim-store after traffic")
        check_families(r1, "zim-router")
        d = lambda a, b, name, node, suffix: (value(a, name, node, suffix) or 0) - (value(b, name, node, suffix) or 0)
        ok(d(b1, b0, "zim_broker_acks", "broker-1", "_total") >= n, "zim-broker counts the acks")
        ok(d(b1, b0, "zim_broker_send_ack_seconds", "broker-1", "_count") >= n,
           "zim-broker's send->ack histogram counts them")
        ok(d(s1, s0, "zim_store_appended", "store-1", "_total") >= n, "zim-store counts the appends")
        ok(d(s1, s0, "zim_store_commit_seconds", "store-1", "_count") >= 1
           and d(s1, s0, "zim_store_batch_size", "store-1", "_sum") >= n,
           "zim-store's commit and batch histograms move")
        ok((value(r1, "zim_router_members", "router-1") or 0) >= 4, "zim-router's members gauge")
        ok((value(b1, "zim_node_metrics_scrapes", "broker-1", "_total") or 0) >= 2,
           "scrapes are counted, labelled with the node name")
    finally:
        for n in reversed(nodes):
            n.stop()


def main():
    work = tempfile.mkdtemp(prefix="zim-metrics-test.", dir=os.environ.get("TMPDIR", "/tmp"))
    try:
        test_server(work)
        test_cluster(work)
    except Exception:
        traceback.print_exc()
        results["fail"] += 1
    finally:
        if results["fail"] == 0:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("# logs kept in " + work)
    print("# %d passed, %d failed" % (results["pass"], results["fail"]))
    return 1 if results["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
