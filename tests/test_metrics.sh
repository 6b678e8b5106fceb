#!/bin/sh
# test_metrics.sh: runs tests/test_metrics.py (Prometheus metrics of real
# nodes, parsed by prometheus_client's text parser) with a python3 that has
# prometheus_client (Debian python3-prometheus-client; tools/dev installs
# it). Skipped (77) without one.
srcdir=${srcdir:-.}
for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 &&
        "$py" -c 'import prometheus_client.parser' >/dev/null 2>&1; then
        exec "$py" "$srcdir/tests/test_metrics.py"
    fi
done
echo "SKIP: no python3 with prometheus_client (apt-get install python3-prometheus-client)"
exit 77
