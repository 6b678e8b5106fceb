// ZimClient against an in-process mock gateway (helpers/mock-server.mjs):
// auth modes, coalescing, dedupe, gaps, retries with the same cid across a
// reconnect, refused tokens, error codes, timeouts, heartbeat, cursors,
// storage, and a clean close().
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { ZimClient, ZimError } from '../dist/index.js';
import { signToken } from '../dist/node.js';
import { MockServer, SECRET } from './helpers/mock-server.mjs';
import { waitFor, record, contiguous, sleep } from './helpers/util.mjs';

let server;
const clients = [];
const tok = (uid, ttl) => signToken(SECRET, 'demo', uid, ttl);

function client(uid, opts = {}) {
    const c = new ZimClient(server.url, {
        token: tok(uid),
        minReconnectDelay: 20,
        maxReconnectDelay: 200,
        cursorInterval: 50,
        ...opts,
    });
    clients.push(c);
    return c;
}

before(async () => {
    server = await new MockServer().start();
});

beforeEach(async () => {
    // A fresh server state per test, same port.
    const port = server.port;
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await server.stop();
    server = await new MockServer().start(port);
});

after(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await server.stop();
});

test('connects with the token in the URL: states and auth_ok', async () => {
    const a = client('alice', { device: 'phone' });
    const r = record(a);
    let info;
    a.on('authenticated', (i) => (info = i));
    await a.connect();
    assert.deepEqual(r.states, ['connecting', 'connected', 'authenticated']);
    assert.deepEqual(info, { app: 'demo', uid: 'alice', device: 'phone' });
    assert.equal(a.state, 'authenticated');
    assert.equal(server.received.filter((x) => x.frame.op === 'auth').length, 0);
});

test('connects with an auth frame', async () => {
    const a = client('alice', { auth: 'frame', device: 'tab' });
    await a.connect();
    const auth = server.received.find((x) => x.frame.op === 'auth');
    assert.equal(auth.frame.device, 'tab');
    assert.equal(a.user.uid, 'alice');
});

test('two clients chat; sends made before connect() are queued; frames are coalesced', async () => {
    const a = client('alice');
    const b = client('bob');
    const rb = record(b);
    const early = a.send('bob', 'early');
    await Promise.all([a.connect(), b.connect()]);
    const ack0 = await early;
    assert.equal(ack0.seq, 1);
    assert.equal(typeof ack0.id, 'bigint');
    const before = server.messages;
    const acks = await Promise.all(Array.from({ length: 50 }, (_, i) => a.send('bob', { n: i })));
    // 50 sends written in one tick travel in one WebSocket message
    const sendMsgs = new Set(server.received.filter((x) => x.frame.op === 'send' && x.message > before).map((x) => x.message));
    assert.equal(sendMsgs.size, 1);
    assert.deepEqual(acks.map((x) => x.seq), Array.from({ length: 50 }, (_, i) => i + 2));
    await waitFor(() => rb.messages.length === 51, { what: '51 messages at bob' });
    assert.equal(rb.messages[0].body, 'early');
    assert.deepEqual(rb.messages.slice(1).map((m) => m.body.n), Array.from({ length: 50 }, (_, i) => i));
    assert.ok(contiguous(rb.messages.map((m) => m.seq)));
    assert.equal(rb.messages[0].from, 'alice');
    assert.equal(rb.messages[0].conv, 'p:alice:bob');
    const cid = 'my-own-cid';
    const ack = await a.send('bob', 'x', { cid });
    assert.equal(ack.cid, cid);
});

test('live duplicates are delivered once', async () => {
    const a = client('alice');
    const b = client('bob');
    const rb = record(b);
    await Promise.all([a.connect(), b.connect()]);
    server.duplicateLive = true;
    for (let i = 0; i < 5; i++) await a.send('bob', i);
    await waitFor(() => rb.messages.length >= 5);
    await sleep(50);
    assert.deepEqual(rb.messages.map((m) => m.body), [0, 1, 2, 3, 4]);
});

test('a live msg after a gap triggers a sync that fills it, in order', async () => {
    const a = client('alice');
    const b = client('bob');
    const rb = record(b);
    await Promise.all([a.connect(), b.connect()]);
    await a.send('bob', 'one');
    // ... and bob's syncs are over: a round still to go (his sync on
    // connect crossed 'one') would fetch 'two' and leave no gap.
    await waitFor(() => rb.messages.length === 1 && b.syncing === null);
    server.skipLive.add('bob');
    await a.send('bob', 'two');
    await a.send('bob', 'three');
    server.skipLive.delete('bob');
    await a.send('bob', 'four');
    await waitFor(() => rb.messages.length === 4, { what: 'gap filled' });
    assert.deepEqual(rb.messages.map((m) => m.body), ['one', 'two', 'three', 'four']);
    assert.ok(contiguous(rb.messages.map((m) => m.seq)));
    assert.deepEqual(rb.gaps, [{ from: 2, to: 3, lost: false }]);
});

test('a live msg that the next sync does not find yet: the client syncs again shortly', async () => {
    const a = client('alice');
    const b = client('bob');
    const rb = record(b);
    await Promise.all([a.connect(), b.connect()]);
    // bob has no baseline (an empty inbox): his first live msg makes him
    // sync, and that sync misses it; nothing else would make him look again.
    // (His sync on connect is over first, or it would go another round.)
    await waitFor(() => server.received.some((r) => r.uid === 'bob' && r.frame.op === 'sync') && b.syncing === null, {
        what: "bob's first sync",
    });
    server.staleSyncs.set('bob', 1);
    await a.send('bob', 'one');
    await waitFor(() => rb.messages.length === 1, { what: 'the msg after a second sync' });
    assert.equal(server.staleSyncs.get('bob'), 0);
    assert.deepEqual([rb.messages[0].seq, rb.messages[0].body], [1, 'one']);
    assert.equal(b.lastSeq, 1);
});

test('an offline recipient gets everything in order on connect (auto-sync, paged)', async () => {
    const a = client('alice');
    await a.connect();
    for (let i = 0; i < 25; i++) await a.send('bob', `m${i}`);
    const b = client('bob', { syncLimit: 10 });
    const rb = record(b);
    await b.connect();
    await waitFor(() => rb.messages.length === 25, { what: '25 synced messages' });
    assert.deepEqual(rb.messages.map((m) => m.body), Array.from({ length: 25 }, (_, i) => `m${i}`));
    assert.equal(server.received.filter((x) => x.uid === 'bob' && x.frame.op === 'sync').length, 3);
    // cursor acks are batched: few cursor frames, the last one at 25
    await waitFor(() => server.cursors.get('bob/default') === 25, { what: 'cursor 25' });
    assert.ok(server.received.filter((x) => x.uid === 'bob' && x.frame.op === 'cursor').length <= 3);
    // a later client on the same device resumes from the server's cursor
    const b2 = client('bob');
    const rb2 = record(b2);
    await b2.connect();
    await a.send('bob', 'after');
    await waitFor(() => rb2.messages.length === 1);
    assert.equal(rb2.messages[0].body, 'after');
    assert.equal(rb2.messages[0].seq, 26);
});

test('sync follows more whatever each page holds; a connection lost mid-sync resumes from the last seq', async () => {
    const a = client('alice');
    await a.connect();
    const sizes = [10, 900, 3000, 50, 6000, 200];
    for (let i = 0; i < 40; i++) await a.send('bob', `m${i} ${'x'.repeat(sizes[i % sizes.length])}`);
    server.pageBytes = 8000; // a varying number of messages per page
    server.closeAfterPages = 3; // and the connection cut after the third
    const b = client('bob');
    const rb = record(b);
    let atCut = null;
    b.on('state', (s) => {
        if (s === 'disconnected' && atCut === null) atCut = b.lastSeq;
    });
    await b.connect();
    await waitFor(() => rb.messages.length === 40, { what: '40 synced' });
    assert.deepEqual(rb.messages.map((m) => m.body.split(' ')[0]), Array.from({ length: 40 }, (_, i) => `m${i}`));
    assert.ok(contiguous(rb.messages.map((m) => m.seq)));
    assert.ok(atCut > 0 && atCut < 40, `cut after ${atCut} messages`);
    // every sync asks from where the last one got to: after the cut, from
    // the last seq received, never from the start again
    const since = server.received.filter((x) => x.uid === 'bob' && x.frame.op === 'sync').map((x) => x.frame.since ?? 0);
    assert.ok(since.length > 4 && since.every((v, i) => i === 0 || v > 0), `since: ${since}`);
    assert.ok(since.every((v, i) => i === 0 || v >= since[i - 1]), `since: ${since}`);
    assert.ok(since.includes(atCut), `since: ${since}, cut at ${atCut}`);
    assert.equal(b.lastSeq, 40);
    assert.deepEqual(rb.errors, []);
});

test('history() asks for the same page again after a connection lost before the answer', async () => {
    const a = client('alice');
    const b = client('bob');
    await Promise.all([a.connect(), b.connect()]);
    for (let i = 0; i < 30; i++) await a.send('bob', i);
    server.pageBytes = 1000; // ~10 messages per page, whatever limit says
    const seen = [];
    let before;
    for (let pages = 0; ; pages++) {
        if (pages === 1) server.closeOnHistory = 1;
        const page = await b.history('alice', { before, limit: 1000 });
        seen.push(...page.msgs.map((m) => m.body));
        if (!page.more) break;
        before = page.msgs.at(-1).id;
        assert.ok(pages < 30);
    }
    assert.deepEqual(seen, Array.from({ length: 30 }, (_, i) => 29 - i));
    const asked = server.received.filter((x) => x.uid === 'bob' && x.frame.op === 'history').map((x) => x.frame.before);
    assert.ok(asked.length >= 4);
    assert.equal(asked[1], asked[2]); // the same page, asked again on the new connection
});

test('lost acks: after a reconnect, unacked sends are retried with the same cid; no duplicates', async () => {
    const a = client('alice');
    const b = client('bob');
    const ra = record(a);
    const rb = record(b);
    await Promise.all([a.connect(), b.connect()]);
    server.dropAcks = 3;
    const sends = [0, 1, 2, 3].map((i) => a.send('bob', i, { cid: `c${i}` }));
    await waitFor(() => server.cids.size === 4);
    await waitFor(() => ra.acks.length === 1); // the 4th was acked
    server.killConnections();
    const acks = await Promise.all(sends);
    assert.deepEqual(acks.map((x) => x.cid), ['c0', 'c1', 'c2', 'c3']);
    assert.deepEqual(acks.map((x) => x.seq), [1, 2, 3, 4]);
    assert.equal(ra.acks.length, 4); // each acked once
    assert.ok(ra.states.includes('disconnected'));
    assert.equal(a.state, 'authenticated');
    const resent = server.received.filter((x) => x.frame.op === 'send').map((x) => x.frame.cid);
    assert.deepEqual(resent, ['c0', 'c1', 'c2', 'c3', 'c0', 'c1', 'c2']);
    await waitFor(() => rb.messages.length === 4);
    await sleep(50);
    assert.deepEqual(rb.messages.map((m) => m.body), [0, 1, 2, 3]);
    assert.equal(server.box('bob').length, 4);
    // alice's own seqs came from acks: no sync was needed to stay gapless
    assert.equal(a.lastSeq, 4);
});

test('no ack on a live connection: written again after ackTimeout with the same cid, stored once', async () => {
    const a = client('alice', { ackTimeout: 200 });
    const b = client('bob');
    const ra = record(a);
    const rb = record(b);
    await Promise.all([a.connect(), b.connect()]);
    server.dropAcks = 1; // as if the broker died holding it
    const t0 = Date.now();
    const ack = await a.send('bob', 'x', { cid: 'lost' });
    assert.ok(Date.now() - t0 >= 150, 'resent only after the ack timeout');
    assert.equal(ack.seq, 1);
    assert.equal(ra.acks.length, 1);
    assert.deepEqual(ra.states.filter((st) => st === 'disconnected'), [], 'no reconnect needed');
    const sent = server.received.filter((x) => x.frame.op === 'send').map((x) => x.frame.cid);
    assert.deepEqual(sent, ['lost', 'lost']);
    await waitFor(() => rb.messages.length === 1);
    assert.equal(server.box('bob').length, 1);
    // acked sends are not written again
    await sleep(300);
    assert.equal(server.received.filter((x) => x.frame.op === 'send').length, 2);
});

test('a sync answered with 5030 is tried again shortly; no error event', async () => {
    const a = client('alice');
    await a.connect();
    for (let i = 0; i < 3; i++) await a.send('carol', i);
    server.failSyncs = 2;
    const c = client('carol');
    const rc = record(c);
    await c.connect();
    await waitFor(() => rc.messages.length === 3, { what: 'carol synced after two 5030s' });
    assert.deepEqual(rc.messages.map((m) => m.body), [0, 1, 2]);
    assert.equal(server.received.filter((x) => x.uid === 'carol' && x.frame.op === 'sync').length >= 3, true);
    assert.deepEqual(rc.errors, []);
});

test('a static token refused at the upgrade (403): error, closed, sends rejected', async () => {
    server.refuseTokens = true;
    const a = client('alice');
    const ra = record(a);
    const s = a.send('bob', 'x');
    await assert.rejects(a.connect(), (e) => e instanceof ZimError && e.code === 4011 && e.status === 403);
    await assert.rejects(s, (e) => e.code === 4011);
    assert.equal(a.state, 'closed');
    assert.equal(ra.errors[0].status, 403);
    // a send after the stop fails at once, not after sendTimeout
    const t0 = Date.now();
    await assert.rejects(a.send('bob', 'y'), (e) => e.code === 4011);
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(a.pendingSends, 0);
});

test('sync(0) right after connect replays everything, with no false gap', async () => {
    const a = client('alice');
    await a.connect();
    for (let i = 0; i < 5; i++) await a.send('carol', i);
    const c = client('carol', { lastSeq: 3 });
    const rc = record(c);
    await c.connect(); // the automatic sync from 3 is still running
    await c.sync(0);
    await sleep(50);
    assert.deepEqual(rc.gaps, []);
    assert.deepEqual(rc.messages.slice(-5).map((m) => m.seq), [1, 2, 3, 4, 5]);
    assert.equal(c.lastSeq, 5);
});

test('close() inside a message handler stops delivery and leaves no timer', async () => {
    const a = client('alice');
    await a.connect();
    for (let i = 0; i < 5; i++) await a.send('carol', i);
    const c = client('carol');
    const seen = [];
    c.on('message', (m) => {
        seen.push(m.seq);
        if (seen.length === 1) void c.close();
    });
    await c.connect();
    await sleep(200);
    assert.deepEqual(seen, [1]);
    assert.equal(c.state, 'closed');
});

test('autoSync off: live messages are delivered (the first sets the baseline)', async () => {
    const c = client('carol', { autoSync: false });
    const rc = record(c);
    await c.connect();
    const a = client('alice');
    await a.connect();
    for (let i = 0; i < 3; i++) await a.send('carol', i);
    await waitFor(() => rc.messages.length === 3, { what: 'three live messages' });
    assert.deepEqual(rc.messages.map((m) => m.body), [0, 1, 2]);
    assert.equal(c.lastSeq, 3);
});

test('getToken: a refused token is replaced by a fresh one', async () => {
    let calls = 0;
    const a = client('alice', {
        token: undefined,
        getToken: async () => (++calls === 1 ? tok('alice', -10) : tok('alice')), // the first is expired
    });
    const ra = record(a);
    await a.connect();
    assert.equal(calls, 2);
    assert.equal(ra.errors[0].code, 4011);
    assert.equal(a.state, 'authenticated');
});

test('getToken with frame auth: error 4011 then a fresh token', async () => {
    let calls = 0;
    const a = client('alice', {
        token: undefined,
        auth: 'frame',
        getToken: () => (++calls === 1 ? 'garbage' : tok('alice')),
    });
    await a.connect();
    assert.equal(calls, 2);
});

test('frame auth refused with 4016, 4017 or 4018: a fresh token at once, not after the server gives up', { timeout: 20000 }, async () => {
    for (const code of [4016, 4017, 4018]) {
        server.authRefusal = code;
        let calls = 0;
        const a = client('alice', {
            token: undefined,
            auth: 'frame',
            connectTimeout: 60000, // the server's auth_timeout is what an SDK that waited would hit
            getToken: () => (++calls === 1 ? 'garbage' : tok('alice')),
        });
        const ra = record(a);
        await a.connect();
        assert.equal(calls, 2);
        assert.equal(ra.errors[0].code, code);
        await a.close();
    }
});

test('server error codes: non-retryable rejects with the code, retryable is retried with the same cid', async () => {
    const a = client('alice');
    await a.connect();
    await assert.rejects(a.send('not valid!', 'x'), (e) => e instanceof ZimError && e.code === 4004 && !!e.cid);
    server.failNext = [5030, 4029];
    const ack = await a.send('bob', 'y', { cid: 'retry-me' });
    assert.equal(ack.cid, 'retry-me');
    assert.deepEqual(server.received.filter((x) => x.frame.cid === 'retry-me').length, 3);
    assert.equal(server.box('bob').length, 1);
});

test('send timeout rejects with code timeout', async () => {
    const a = client('alice', { sendTimeout: 150 });
    await a.connect();
    server.dropAcks = 1;
    await assert.rejects(a.send('bob', 'x'), (e) => e.code === 'timeout');
    assert.equal(a.pendingSends, 0);
});

test('no answer to ping: the client reconnects', async () => {
    const a = client('alice', { pingInterval: 50, pongTimeout: 50 });
    const ra = record(a);
    await a.connect();
    server.silentPongs = true;
    await waitFor(() => ra.states.includes('disconnected'), { what: 'disconnect after silent pongs' });
    server.silentPongs = false;
    await waitFor(() => a.state === 'authenticated');
    assert.ok(server.received.filter((x) => x.frame.op === 'ping').length >= 1);
});

test('history pages newest first, before = the last id', async () => {
    const a = client('alice');
    await a.connect();
    for (let i = 0; i < 7; i++) await a.send('bob', i);
    const p1 = await a.history('bob', { limit: 3 });
    assert.deepEqual(p1.msgs.map((m) => m.body), [6, 5, 4]);
    assert.equal(p1.more, true);
    assert.equal(typeof p1.msgs[0].id, 'bigint');
    const p2 = await a.history('bob', { limit: 3, before: p1.msgs.at(-1).id });
    assert.deepEqual(p2.msgs.map((m) => m.body), [3, 2, 1]);
    const p3 = await a.history('bob', { limit: 3, before: p2.msgs.at(-1).id });
    assert.deepEqual(p3.msgs.map((m) => m.body), [0]);
    assert.equal(p3.more, false);
});

test('storage hook: lastSeq is loaded, synced from, and saved', async () => {
    const a = client('alice');
    await a.connect();
    for (let i = 0; i < 5; i++) await a.send('bob', i);
    const saved = [];
    const b = client('bob', { storage: { load: async () => 3, save: (s) => saved.push(s) } });
    const rb = record(b);
    await b.connect();
    await waitFor(() => rb.messages.length === 2);
    assert.deepEqual(rb.messages.map((m) => m.seq), [4, 5]);
    assert.equal(server.received.find((x) => x.uid === 'bob' && x.frame.op === 'sync').frame.since, 3);
    await waitFor(() => saved.at(-1) === 5);
    // sync(since) replays explicitly
    rb.messages.length = 0;
    assert.equal(await b.sync(1), 5);
    assert.deepEqual(rb.messages.map((m) => m.seq), [2, 3, 4, 5]);
});

test('close() is clean: no reconnect, pending requests and sends rejected, no timers left', async () => {
    const a = client('alice');
    const ra = record(a);
    await a.connect();
    server.dropAcks = 1;
    const s = a.send('bob', 'x');
    await waitFor(() => server.cids.size === 1);
    const rejected = assert.rejects(s, (e) => e.code === 'closed');
    await a.close();
    await rejected;
    await assert.rejects(a.send('bob', 'y'), (e) => e.code === 'closed');
    assert.equal(a.state, 'closed');
    assert.equal(ra.states.at(-1), 'closed');
    await sleep(300);
    assert.equal(ra.states.at(-1), 'closed');
    assert.equal(server.conns.size, 0);
    // nothing of the client keeps the process alive
    const left = process.getActiveResourcesInfo().filter((r) => r === 'Timeout');
    assert.equal(left.length, 0, `timers left: ${left}`);
});

// A WebSocket that, like a browser's, hides HTTP statuses (wraps `ws`).
import { WebSocket as WsSocket } from 'ws';
class BrowserLikeWebSocket {
    constructor(url) {
        this.inner = new WsSocket(url);
        this.inner.binaryType = 'arraybuffer';
        this.onopen = this.onmessage = this.onerror = this.onclose = null;
        this.inner.onopen = (e) => this.onopen?.(e);
        this.inner.onmessage = (e) => this.onmessage?.({ data: e.data });
        this.inner.onerror = () => this.onerror?.({}); // no message, like a browser
        this.inner.onclose = (e) => this.onclose?.({ code: e.code, reason: e.reason });
    }
    get readyState() { return this.inner.readyState; }
    set binaryType(v) { this.inner.binaryType = v; }
    get binaryType() { return this.inner.binaryType; }
    send(d) { this.inner.send(d); }
    close(code, reason) { this.inner.close(code, reason); }
}

test('auth auto: with a WebSocket that hides HTTP statuses, the token goes in an auth frame', async () => {
    const a = client('alice', { WebSocket: BrowserLikeWebSocket, device: 'web' });
    await a.connect();
    const auth = server.received.find((x) => x.frame.op === 'auth');
    assert.ok(auth, 'auth frame sent');
    assert.equal(auth.frame.device, 'web');
    const ack = await a.send('bob', 'x');
    assert.equal(ack.seq, 1);
});

test('auth query with a WebSocket that hides HTTP statuses: a failed upgrade fetches a fresh token', async () => {
    let calls = 0;
    server.refuseTokens = true;
    const a = client('alice', { WebSocket: BrowserLikeWebSocket, auth: 'query', token: undefined, getToken: () => { calls++; return tok('alice'); } });
    const ready = a.connect();
    await waitFor(() => calls >= 2, { what: 'second getToken' });
    server.refuseTokens = false;
    await ready;
    assert.ok(calls >= 2);
});

test('connect() again after close() works; sync resumes from lastSeq', async () => {
    const a = client('alice');
    const b = client('bob');
    const rb = record(b);
    await Promise.all([a.connect(), b.connect()]);
    await a.send('bob', 1);
    await waitFor(() => rb.messages.length === 1);
    await b.close();
    await a.send('bob', 2);
    await b.connect();
    await waitFor(() => rb.messages.length === 2);
    assert.deepEqual(rb.messages.map((m) => m.seq), [1, 2]);
    const syncs = server.received.filter((x) => x.uid === 'bob' && x.frame.op === 'sync');
    assert.equal(syncs.at(-1).frame.since, 1);
});

test('own acked seqs keep lastSeq contiguous; a hole before an acked seq is synced', async () => {
    const a = client('alice', { lastSeq: 0 });
    const ra = record(a);
    const b = client('bob');
    await Promise.all([a.connect(), b.connect()]);
    await a.send('bob', 'a1'); // alice seq 1
    assert.equal(a.lastSeq, 1);
    server.skipLive.add('alice');
    await b.send('alice', 'b1'); // alice seq 2, not delivered live
    server.skipLive.delete('alice');
    await a.send('bob', 'a2'); // alice seq 3: ack shows a hole at 2
    await waitFor(() => a.lastSeq === 3, { what: 'hole filled by a sync' });
    assert.deepEqual(ra.messages.map((m) => m.body), ['b1']);
});

test('group send: the ack has the gseq, members get it with their own seq and the group', async () => {
    (server.groups ??= new Map()).set('team', ['alice', 'bob']);
    const a = client('alice');
    const b = client('bob');
    const got = [];
    b.on('message', (m) => got.push(m));
    await a.connect();
    await b.connect();
    await a.send('bob', 'first a 1:1');
    const ack = await a.sendGroup('team', 'hello team');
    assert.equal(ack.gseq, 1);
    assert.equal(ack.seq, 2);
    await waitFor(() => got.length === 2);
    assert.equal(got[1].group, 'team');
    assert.equal(got[1].conv, 'g:team');
    assert.equal(got[1].seq, 2);
    assert.equal(got[1].body, 'hello team');
    const sent = server.received.find((x) => x.frame.op === 'send' && x.frame.group === 'team');
    assert.equal(sent.frame.to, undefined);
    const c = client('carol');
    await c.connect();
    await assert.rejects(c.sendGroup('team', 'let me in'), (e) => e instanceof ZimError && e.code === 4040);
    await assert.rejects(a.sendGroup('nope', 'anyone?'), (e) => e instanceof ZimError && e.code === 4041);
});

test('reads wait their turn: at most maxReadsInflight (4) unanswered at a time', async () => {
    const a = client('alice');
    await a.connect();
    await waitFor(() => server.received.some((x) => x.frame.op === 'sync')); // the auto-sync, answered
    server.holdConvs = true;
    const asked = () => server.received.filter((x) => x.frame.op === 'convs').length;
    const all = Promise.all(Array.from({ length: 10 }, () => a.convs()));
    await waitFor(() => asked() === 4, { what: '4 convs written' });
    await sleep(100);
    assert.equal(asked(), 4, 'the fifth waits for an answer');
    server.releaseConvs(); // answers the 4; the next 4 go out, and are answered at once
    const pages = await all;
    assert.equal(pages.length, 10);
    assert.equal(asked(), 10);
    assert.ok(pages.every((p) => p.more === false && p.convs.length === 0));
});

test('a read mark cut off by a lost connection is written again after the reconnect', async () => {
    const a = client('alice');
    const ra = record(a);
    const receipts = [];
    a.on('receipt', (r) => receipts.push(r));
    await a.connect();
    server.cutOnMark = 1;
    const r = await a.read('p:alice:bob', 5);
    assert.deepEqual(r, { conv: 'p:alice:bob', user: 'alice', read: 5, delivered: 5 });
    assert.equal(server.received.filter((x) => x.frame.op === 'read').length, 2);
    assert.ok(ra.states.filter((s) => s === 'authenticated').length >= 2, 'reconnected');
    assert.deepEqual(receipts, [r]);
});

test('a mark answered 4029 (no cid, no rid) is written again shortly, without an error event', async () => {
    const a = client('alice');
    const ra = record(a);
    await a.connect();
    server.busyMarks = 1;
    const [d, r] = await Promise.all([a.delivered('p:alice:bob', 3), a.read('g:team', 2)]);
    assert.deepEqual([d.delivered, d.read], [3, 0]);
    assert.deepEqual([r.conv, r.read], ['g:team', 2]);
    assert.deepEqual(ra.errors, []);
    const marks = server.received.filter((x) => x.frame.op === 'read' || x.frame.op === 'delivered');
    assert.deepEqual(marks.map((x) => x.frame.op), ['delivered', 'read', 'delivered'], 'the refused one again');
    // a conversation that is not the user's is refused locally with the server's codes
    await assert.rejects(a.read('p:bob:carol', 1), (e) => e instanceof ZimError && e.code === 4030);
    await assert.rejects(a.read('bob', 1), (e) => e instanceof ZimError && e.code === 4001);
    await assert.rejects(a.read('p:alice:bob', -1), (e) => e instanceof ZimError && e.code === 4001);
    // made before the first auth_ok: checked then, never written
    const b = client('bob');
    const early = b.read('p:alice:carol', 1);
    await b.connect();
    await assert.rejects(early, (e) => e instanceof ZimError && e.code === 4030);
    assert.equal(server.received.filter((x) => x.uid === 'bob' && x.frame.op === 'read').length, 0);
});
