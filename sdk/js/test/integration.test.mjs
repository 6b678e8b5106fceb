// ZimClient against a REAL zim-server started here (see helpers/zim-server.mjs):
// chat, offline sync, history paging, a SIGKILL with unacked sends and a
// restart on the same data dir and port, refused tokens, clean close.
// Skipped (with the reason) when no zim-server binary is found; set
// ZIM_SERVER to its path.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { ZimClient, ZimError } from '../dist/index.js';
import { signToken } from '../dist/node.js';
import { clientOptions, startServer, restartServer, stopServer, tempDataDir, removeDir, unavailable } from './helpers/zim-server.mjs';
import { waitFor, record, contiguous, sleep } from './helpers/util.mjs';

const skip = unavailable();
if (skip && (process.env.ZIM_SERVER || process.env.ZIM_BIN)) throw new Error(skip); // asked for explicitly: fail, do not skip

// A timeout per test: one that fails with the server down must not hang the rest.
describe('zim-server integration', { skip: skip ?? false, timeout: 120000 }, () => {
    let dir;
    let server;
    let earlierLogs = ''; // of the servers killed and replaced
    const clients = [];

    function client(uid, opts = {}) {
        const c = new ZimClient(server.url, clientOptions(server, uid, {
            cursorInterval: 100,
            sendTimeout: 60000,
            ...opts,
        }));
        clients.push(c);
        return c;
    }

    async function closeAll() {
        await Promise.all(clients.splice(0).map((c) => c.close()));
    }

    before(async () => {
        dir = tempDataDir();
        server = await startServer(dir);
    });

    after(async () => {
        await closeAll();
        if (server) await server.kill('SIGTERM');
        // tests/test_sdk_js.sh shows this log when a test failed.
        if (server && process.env.ZIM_JS_SERVER_LOG) writeFileSync(process.env.ZIM_JS_SERVER_LOG, earlierLogs + server.log);
        removeDir(dir);
    });

    test('the token helper signs what the server accepts; a bad signature is refused with 403', async () => {
        const ok = client('tok_ok');
        await ok.connect();
        assert.equal(ok.user.uid, 'tok_ok');
        assert.equal(ok.user.app, 'demo');
        const bad = client('tok_bad', { token: signToken('not-the-secret-at-all', 'demo', 'tok_bad') });
        const rb = record(bad);
        await assert.rejects(bad.connect(), (e) => e instanceof ZimError && e.code === 4011 && e.status === 403);
        assert.equal(bad.state, 'closed');
        assert.equal(rb.errors.length, 1);
        // frame auth: the server answers 4011 in an error frame
        const badFrame = client('tok_bad2', { auth: 'frame', token: 'x.y.z' });
        await assert.rejects(badFrame.connect(), (e) => e.code === 4011 && e.status === undefined);
        // getToken: the refused token is replaced
        let calls = 0;
        const fresh = client('tok_fresh', {
            token: undefined,
            getToken: () => (++calls === 1 ? signToken(server.secret, 'demo', 'tok_fresh', -60) : signToken(server.secret, 'demo', 'tok_fresh', 600)),
        });
        await fresh.connect();
        assert.equal(calls, 2);
        await closeAll();
    });

    test('two clients chat', async () => {
        const a = client('alice', { device: 'phone' });
        const b = client('bob');
        const ra = record(a);
        const rb = record(b);
        await Promise.all([a.connect(), b.connect()]);
        const ack1 = await a.send('bob', 'hi bob');
        assert.equal(typeof ack1.id, 'bigint');
        assert.equal(ack1.seq, 1);
        await waitFor(() => rb.messages.length === 1, { what: 'bob gets hi' });
        const m = rb.messages[0];
        assert.deepEqual([m.seq, m.from, m.to, m.conv, m.body, m.id], [1, 'alice', 'bob', 'p:alice:bob', 'hi bob', ack1.id]);
        const ack2 = await b.send('alice', { text: 'hi alice', n: 2 ** 40, big: 2n ** 60n, bin: new Uint8Array([1, 2]) });
        await waitFor(() => ra.messages.length === 1, { what: 'alice gets the reply' });
        assert.equal(ra.messages[0].seq, 2); // alice's inbox: her send (1), bob's reply (2)
        assert.deepEqual(ra.messages[0].body, { text: 'hi alice', n: 2 ** 40, big: 2n ** 60n, bin: new Uint8Array([1, 2]) });
        assert.equal(ack2.seq, 2);
        // a burst, coalesced into few WebSocket messages
        const acks = await Promise.all(Array.from({ length: 100 }, (_, i) => a.send('bob', i)));
        assert.ok(contiguous(acks.map((x) => x.seq), 3));
        await waitFor(() => rb.messages.length === 101, { what: '101 messages at bob' });
        // bob's inbox: alice's hi (1), his own reply (2, an ack, not a msg), the burst (3..102)
        assert.equal(rb.messages[0].seq, 1);
        assert.ok(contiguous(rb.messages.slice(1).map((x) => x.seq), 3));
        assert.equal(b.lastSeq, 102);
        assert.deepEqual(rb.messages.slice(1).map((x) => x.body), Array.from({ length: 100 }, (_, i) => i));
        assert.equal(ra.acks.length, 101);
        assert.equal(rb.gaps.length, 0);
        // errors carry the server code
        await assert.rejects(a.send('no spaces allowed', 'x'), (e) => e.code === 4004);
        await closeAll();
    });

    test('an offline recipient gets everything in order via auto-sync on connect', async () => {
        const a = client('sender1');
        await a.connect();
        for (let i = 0; i < 35; i++) await a.send('carol', `m${i}`);
        const c = client('carol', { syncLimit: 10 });
        const rc = record(c);
        await c.connect();
        await waitFor(() => rc.messages.length === 35, { what: '35 synced' });
        assert.deepEqual(rc.messages.map((m) => m.body), Array.from({ length: 35 }, (_, i) => `m${i}`));
        assert.ok(contiguous(rc.messages.map((m) => m.seq)));
        await sleep(300); // the cursor goes out
        await c.close();
        // the next connection of the same device resumes after the cursor
        await a.send('carol', 'later');
        const c2 = client('carol');
        const rc2 = record(c2);
        await c2.connect();
        await waitFor(() => rc2.messages.length === 1, { what: 'only the new message' });
        assert.deepEqual([rc2.messages[0].seq, rc2.messages[0].body], [36, 'later']);
        await sleep(200);
        assert.equal(rc2.messages.length, 1);
        await closeAll();
    });

    test('history paging', async () => {
        const a = client('hist_a');
        const b = client('hist_b');
        await Promise.all([a.connect(), b.connect()]);
        for (let i = 0; i < 12; i++) await (i % 2 ? b.send('hist_a', i) : a.send('hist_b', i));
        const seen = [];
        let before;
        for (;;) {
            const page = await a.history('hist_b', { limit: 5, before });
            assert.ok(page.msgs.length <= 5);
            seen.push(...page.msgs.map((m) => m.body));
            if (!page.more) break;
            before = page.msgs.at(-1).id;
        }
        assert.deepEqual(seen, Array.from({ length: 12 }, (_, i) => 11 - i));
        const fromB = await b.history('hist_a', { limit: 100 });
        assert.deepEqual(fromB.msgs.map((m) => m.body), seen);
        assert.equal(fromB.more, false);
        await closeAll();
    });

    test('SIGKILL with unacked sends, restart on the same data dir and port: retried with the same cid, no duplicates', async () => {
        const a = client('crash_a');
        const ra = record(a);
        await a.connect();
        const N1 = 100;
        const N2 = 3000;
        const sends = Array.from({ length: N1 }, (_, i) => a.send('crash_b', i, { cid: `crash-${i}` }));
        await waitFor(() => ra.acks.length >= 10, { what: 'first acks' });
        // The server stopped first, so that none of the next sends can be
        // acked before the kill, however fast it is (a server that acked
        // them all in the moment before the kill made this test fail).
        await stopServer(server);
        for (let i = N1; i < N1 + N2; i++) sends.push(a.send('crash_b', i, { cid: `crash-${i}` }));
        await new Promise((r) => setImmediate(r)); // written to the socket
        const port = server.port;
        await server.kill('SIGKILL');
        earlierLogs += server.log;
        await waitFor(() => a.state === 'disconnected' || a.state === 'connecting', { what: 'client notices' });
        // What the dead server had written before the kill was read by now.
        assert.ok(a.pendingSends >= N2, `the sends after the stop were unacked when the connection dropped (${a.pendingSends})`);
        await sleep(1500); // a few reconnect attempts against a dead port
        const attempts = ra.states.filter((s) => s === 'connecting').length;
        assert.ok(attempts >= 3, `reconnect attempts while down: ${attempts}`);
        server = await restartServer(dir, port);
        const acks = await Promise.all(sends);
        assert.equal(acks.length, N1 + N2);
        assert.equal(ra.acks.length, N1 + N2, 'each send acked once');
        assert.deepEqual(acks.map((x) => x.cid), Array.from({ length: N1 + N2 }, (_, i) => `crash-${i}`));
        const seqs = acks.map((x) => x.seq);
        assert.ok(contiguous(seqs), 'sender seqs 1..N in send order');
        assert.equal(new Set(acks.map((x) => x.id)).size, N1 + N2, 'distinct ids');
        // the recipient, offline all along, syncs exactly one copy of each, in order
        const b = client('crash_b', { syncLimit: 1000 });
        const rb = record(b);
        await b.connect();
        await waitFor(() => rb.messages.length >= N1 + N2, { what: 'recipient synced', timeout: 30000 });
        await sleep(300);
        assert.equal(rb.messages.length, N1 + N2);
        assert.ok(contiguous(rb.messages.map((m) => m.seq)));
        assert.deepEqual(rb.messages.map((m) => m.body), Array.from({ length: N1 + N2 }, (_, i) => i));
        assert.deepEqual(rb.messages.map((m) => m.id), acks.map((x) => x.id));
        await closeAll();
    });

    test('close() is clean', async () => {
        const a = client('closer');
        const ra = record(a);
        await a.connect();
        await a.send('closer2', 'x');
        await a.close();
        assert.equal(a.state, 'closed');
        await sleep(500);
        assert.equal(ra.states.at(-1), 'closed');
        assert.equal(ra.states.filter((s) => s === 'connecting').length, 1);
        await assert.rejects(a.history('closer2'), (e) => e.code === 'closed');
    });
});
