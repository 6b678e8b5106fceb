// ZimClient over wss:// (issue 12, item 5) against a REAL zim-server with
// a self-signed certificate made here with openssl, WSS beside plain ws
// (--tls-cert, --tls-key, --tls-port 0). Node's WebSocket (the `ws`
// package) is given the certificate as its CA through the SDK's WebSocket
// option; without it the handshake is refused.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { ZimClient } from '../dist/index.js';
import { clientOptions, startServer, tempDataDir, removeDir, unavailable } from './helpers/zim-server.mjs';
import { waitFor, record } from './helpers/util.mjs';

const skip = unavailable();
if (skip && (process.env.ZIM_SERVER || process.env.ZIM_BIN)) throw new Error(skip);

describe('zim-server over WSS', { skip: skip ?? false, timeout: 120000 }, () => {
    let dir;
    let server;
    let ca;
    const clients = [];

    before(async () => {
        dir = tempDataDir();
        const cert = join(dir, 'cert.pem');
        const key = join(dir, 'key.pem');
        execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2',
            '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
        ca = readFileSync(cert);
        server = await startServer(dir, 0, { extraArgs: ['--tls-cert', cert, '--tls-key', key, '--tls-port', '0'] });
        assert.ok(server.wssPort > 0, 'the server names its WSS port');
    });

    after(async () => {
        await Promise.all(clients.splice(0).map((c) => c.close()));
        if (server) await server.kill('SIGTERM');
        if (server && process.env.ZIM_JS_SERVER_LOG) writeFileSync(process.env.ZIM_JS_SERVER_LOG, server.log);
        removeDir(dir);
    });

    // A WebSocket class that trusts the test's certificate.
    class TrustingWebSocket extends WebSocket {
        constructor(url) {
            super(url, { ca });
        }
    }

    function client(uid, url, opts = {}) {
        const c = new ZimClient(url, clientOptions(server, uid, opts));
        clients.push(c);
        return c;
    }

    test('two clients chat over wss://, one over ws:// beside it', async () => {
        const wss = `wss://127.0.0.1:${server.wssPort}/ws`;
        const a = client('alice', wss, { WebSocket: TrustingWebSocket });
        const b = client('bob', server.url); // plain ws, the other port
        const rb = record(b);
        const ra = record(a);
        await Promise.all([a.connect(), b.connect()]);
        const ack = await a.send('bob', 'hi over TLS');
        assert.equal(ack.seq, 1);
        await waitFor(() => rb.messages.length === 1, { what: 'bob gets it' });
        assert.deepEqual([rb.messages[0].from, rb.messages[0].body], ['alice', 'hi over TLS']);
        await b.send('alice', 'and back');
        await waitFor(() => ra.messages.length === 1, { what: 'alice gets the reply over TLS' });
        assert.equal(ra.messages[0].body, 'and back');
    });

    test('a client that does not trust the certificate is refused', async () => {
        const c = client('eve', `wss://127.0.0.1:${server.wssPort}/ws`, { WebSocket: WebSocket });
        const rc = record(c);
        const ready = c.connect();
        // it keeps retrying (the SDK reconnects until close()), never authenticated
        await waitFor(() => rc.states.filter((s) => s === 'disconnected').length >= 2, { timeout: 20000, what: 'two refused attempts' });
        assert.ok(!rc.states.includes('connected'));
        await c.close();
        await assert.rejects(ready);
    });
});
