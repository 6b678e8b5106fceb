// ZimClient's receipts, conversation list, groups, channels and backend
// pushes against a REAL zim-server started here (with the push API on a free
// port and store/csync_max_behind = 20, so a channel reader 30 behind gets
// the reset answer). Groups are made through the admin endpoint with the
// zimctl beside the server binary. Skipped (with the reason) when no
// zim-server binary is found; set ZIM_SERVER to its path.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ZimClient, ZimError, peerConv, groupConv, parseConv } from '../dist/index.js';
import { clientOptions, startServer, tempDataDir, removeDir, unavailable, zimctl } from './helpers/zim-server.mjs';
import { waitFor, record, sleep } from './helpers/util.mjs';

const skip = unavailable();
if (skip && (process.env.ZIM_SERVER || process.env.ZIM_BIN)) throw new Error(skip); // asked for explicitly: fail, do not skip

describe('receipts, convs, groups and channels against zim-server', { skip: skip ?? false, timeout: 120000 }, () => {
    let dir;
    let server;
    const clients = [];

    function client(uid, opts = {}) {
        const c = new ZimClient(server.url, clientOptions(server, uid, { cursorInterval: 100, ...opts }));
        clients.push(c);
        return c;
    }

    // Connected clients with their recorded events (messages, receipts, errors...).
    async function users(...specs) {
        const out = specs.map(([uid, device]) => {
            const c = client(uid, device ? { device } : {});
            const r = record(c);
            r.receipts = [];
            r.pushes = [];
            c.on('receipt', (x) => r.receipts.push(x));
            c.on('push', (x) => r.pushes.push(x));
            return { c, r };
        });
        await Promise.all(out.map((u) => u.c.connect()));
        return out;
    }

    async function closeAll() {
        await Promise.all(clients.splice(0).map((c) => c.close()));
    }

    before(async () => {
        dir = tempDataDir();
        const cfg = join(dir, 'convs.cfg');
        writeFileSync(cfg, 'store\n    csync_max_behind = 20\n');
        server = await startServer(join(dir, 'data'), 0, { extraArgs: ['-c', cfg, '--api', '127.0.0.1:0'] });
    });

    after(async () => {
        await closeAll();
        if (server) await server.kill('SIGTERM');
        // tests/test_sdk_js.sh shows this log when a test failed.
        if (server && process.env.ZIM_JS_SERVER_LOG) writeFileSync(`${process.env.ZIM_JS_SERVER_LOG}.convs`, server.log);
        removeDir(dir);
    });

    test('conversation keys', () => {
        assert.equal(peerConv('bob', 'alice'), 'p:alice:bob');
        assert.equal(peerConv('al', 'alice'), 'p:al:alice');
        assert.equal(groupConv('team'), 'g:team');
        assert.deepEqual(parseConv('p:alice:bob', 'bob'), { users: ['alice', 'bob'], peer: 'alice' });
        assert.deepEqual(parseConv('g:team'), { group: 'team' });
        for (const bad of ['p:bob:alice', 'p::bob', 'g:', 'g:a b', 'x:a:b', 'p:alice']) assert.equal(parseConv(bad), null, bad);
    });

    test('receipts both ways across two devices each', async () => {
        const [ap, al, bp, bl] = await users(['ann', 'phone'], ['ann', 'laptop'], ['ben', 'phone'], ['ben', 'laptop']);
        const conv = peerConv('ann', 'ben');
        const acks = [];
        for (let i = 1; i <= 3; i++) acks.push(await ap.c.send('ben', `m${i}`));
        assert.deepEqual(acks.map((a) => a.seq), [1, 2, 3]);
        await waitFor(() => bp.r.messages.length === 3 && bl.r.messages.length === 3, { what: 'ben has 3 messages' });
        const bseqs = bp.r.messages.map((m) => m.seq);
        assert.deepEqual(bseqs, [1, 2, 3]);

        // delivered: the answer has ben's cursors; ann's devices learn it in her seqs
        const d = await bp.c.delivered(conv, bseqs[2]);
        assert.deepEqual(d, { conv, user: 'ben', read: 0, delivered: 3 });
        for (const a of [ap, al])
            await waitFor(() => a.r.receipts.some((x) => x.user === 'ben' && x.delivered === acks[2].seq), { what: 'ann sees delivered' });
        const seenByAnn = ap.r.receipts.find((x) => x.user === 'ben');
        assert.deepEqual(seenByAnn, { conv, user: 'ben', delivered: 3 });
        // ben's other device gets his own cursors
        await waitFor(() => bl.r.receipts.some((x) => x.user === 'ben' && x.delivered === 3), { what: "ben's laptop sees his cursor" });

        // read up to the second: ann sees read = her seq of m2
        const r = await bl.c.read(conv, bseqs[1]);
        assert.deepEqual([r.read, r.delivered], [2, 3]);
        for (const a of [ap, al]) await waitFor(() => a.r.receipts.some((x) => x.user === 'ben' && x.read === 2), { what: 'ann sees read 2' });
        await waitFor(() => bp.r.receipts.some((x) => x.user === 'ben' && x.read === 2), { what: "ben's phone sees his read" });
        // a lower read changes nothing: answered with the cursors as they are
        const again = await bp.c.read(conv, 1);
        assert.deepEqual([again.read, again.delivered], [2, 3]);

        // the other way: ben answers (his seq 4, ann's 4), ann's phone reads it
        const back = await bp.c.send('ann', 'reply');
        assert.equal(back.seq, 4);
        await waitFor(() => ap.r.messages.length === 1, { what: 'ann gets the reply' });
        const annSeq = ap.r.messages[0].seq;
        assert.equal(annSeq, 4);
        const ar = await ap.c.read(conv, annSeq);
        assert.equal(ar.read, 4);
        for (const b of [bp, bl]) await waitFor(() => b.r.receipts.some((x) => x.user === 'ann' && x.read === back.seq), { what: 'ben sees ann read' });
        await waitFor(() => al.r.receipts.some((x) => x.user === 'ann' && x.read === 4), { what: "ann's laptop sees her read" });

        // not a conversation of hers / not a key: refused at once, with the server's codes
        await assert.rejects(ap.c.read(peerConv('ben', 'zed'), 1), (e) => e instanceof ZimError && e.code === 4030);
        await assert.rejects(ap.c.delivered('p:ben:ann', 1), (e) => e.code === 4001);
        for (const u of [ap, al, bp, bl]) assert.deepEqual(u.r.errors, []);
        await closeAll();
    });

    test('convs: last message, unread counts, 0 after read, peer cursors, paging', async () => {
        const [cora, dan, eve] = await users(['cora'], ['dan'], ['eve']);
        for (let i = 1; i <= 3; i++) await dan.c.send('cora', `from dan ${i}`);
        await eve.c.send('cora', 'from eve 1');
        const last = await eve.c.send('cora', { text: 'from eve 2' });
        await waitFor(() => cora.r.messages.length === 5, { what: 'cora has 5' });

        let page = await cora.c.convs();
        assert.equal(page.more, false);
        assert.deepEqual(page.convs.map((c) => [c.conv, c.peer, c.unread, c.read, c.seq]), [
            ['p:cora:eve', 'eve', 2, 0, 5],
            ['p:cora:dan', 'dan', 3, 0, 3],
        ]);
        const e = page.convs[0];
        assert.equal(e.id, last.id);
        assert.deepEqual([e.from, e.body], ['eve', { text: 'from eve 2' }]);
        assert.equal(typeof e.ts, 'number');
        assert.equal(e.peer_read, undefined);

        // paging by before
        const p1 = await cora.c.convs({ limit: 1 });
        assert.deepEqual([p1.convs.length, p1.more, p1.convs[0].conv], [1, true, 'p:cora:eve']);
        const p2 = await cora.c.convs({ limit: 1, before: p1.convs[0].id });
        assert.deepEqual([p2.convs.length, p2.more, p2.convs[0].conv], [1, false, 'p:cora:dan']);

        // cora reads dan's conversation: unread 0 there; dan sees it in his convs
        await cora.c.read(peerConv('cora', 'dan'), 3);
        page = await cora.c.convs();
        assert.deepEqual(page.convs.map((c) => [c.conv, c.unread, c.read]), [
            ['p:cora:eve', 2, 0],
            ['p:cora:dan', 0, 3],
        ]);
        const danConvs = await dan.c.convs();
        assert.equal(danConvs.convs.length, 1);
        assert.deepEqual([danConvs.convs[0].unread, danConvs.convs[0].peer_read, danConvs.convs[0].seq], [0, 3, 3]);
        // a message of her own does not count as unread
        await cora.c.send('eve', 'my own');
        page = await cora.c.convs();
        assert.deepEqual(page.convs.map((c) => [c.conv, c.unread, c.from]), [
            ['p:cora:eve', 2, 'cora'],
            ['p:cora:dan', 0, 'dan'],
        ]);
        // many reads at once: the client keeps to the server's limit of 4 in flight (no 4028)
        const many = await Promise.all(Array.from({ length: 12 }, () => cora.c.convs({ limit: 1 })));
        assert.ok(many.every((x) => x.convs.length === 1));
        for (const u of [cora, dan, eve]) assert.deepEqual(u.r.errors, []);
        await closeAll();
    });

    test('a group send reaches every member; groups() and convs() show it; read of g:', async () => {
        const made = await zimctl(server, 'groups', 'create', '--app', 'demo', '--group', 'crew', '--members', 'gia,hal,ida');
        assert.equal(made.kind, 'group');
        const [gia, hal, ida, out] = await users(['gia'], ['hal'], ['ida'], ['outsider']);
        await hal.c.send('gia', 'a 1:1 first'); // hal's inbox seq 1, gia's 1
        const ack = await gia.c.sendGroup('crew', { text: 'hello crew' });
        assert.equal(ack.gseq, 1);
        assert.equal(ack.seq, 2);
        await waitFor(() => hal.r.messages.length === 1 && ida.r.messages.length === 1, { what: 'members get it' });
        for (const [u, seq] of [[hal, 2], [ida, 1]]) {
            const m = u.r.messages[0];
            assert.deepEqual([m.group, m.to, m.conv, m.from, m.seq, m.id], ['crew', 'crew', 'g:crew', 'gia', seq, ack.id]);
            assert.deepEqual(m.body, { text: 'hello crew' });
        }
        const groups = await ida.c.groups();
        assert.deepEqual(groups, [{ group: 'crew', kind: 'group', gseq: 1, joined: 0, members: 3 }]);
        const hc = await hal.c.convs();
        const gc = hc.convs.find((c) => c.conv === 'g:crew');
        assert.deepEqual([gc.group, gc.unread, gc.seq, gc.from], ['crew', 1, 2, 'gia']);
        const r = await hal.c.read(groupConv('crew'), 2);
        assert.equal(r.read, 2);
        assert.equal((await hal.c.convs()).convs.find((c) => c.conv === 'g:crew').unread, 0);
        // a non-member is refused; no such group
        await assert.rejects(out.c.sendGroup('crew', 'x'), (e) => e.code === 4040);
        await assert.rejects(out.c.sendGroup('nogroup', 'x'), (e) => e.code === 4041);
        assert.deepEqual(await out.c.groups(), []);
        await closeAll();
    });

    test('channel csync: after a gseq, paged by more, and the reset answer when too far behind', async () => {
        await zimctl(server, 'groups', 'create', '--app', 'demo', '--group', 'news', '--channel', '--members', 'jo,kim');
        const [jo, kim, lee] = await users(['jo'], ['kim'], ['lee']);
        for (let i = 0; i < 30; i++) {
            const a = await jo.c.sendGroup('news', `news ${i}`);
            assert.deepEqual([a.seq, a.gseq], [0, i + 1]);
        }
        const [g] = await kim.c.groups();
        assert.deepEqual([g.group, g.kind, g.gseq, g.members], ['news', 'channel', 30, 2]);
        // not copied into the inbox: no message events
        await sleep(200);
        assert.equal(kim.r.messages.length, 0);

        let p = await kim.c.csync('news', { from: 15 });
        assert.deepEqual([p.msgs.length, p.more, p.reset], [15, false, false]);
        assert.deepEqual(p.msgs.map((m) => m.gseq), Array.from({ length: 15 }, (_, i) => 16 + i));
        const m = p.msgs[0];
        assert.deepEqual([m.group, m.conv, m.from, m.body, m.seq], ['news', 'g:news', 'jo', 'news 15', undefined]);
        assert.equal(typeof m.id, 'bigint');
        p = await kim.c.csync('news', { from: 15, limit: 10 });
        assert.deepEqual([p.msgs.length, p.more, p.reset], [10, true, false]);
        p = await kim.c.csync('news', { from: p.msgs.at(-1).gseq, limit: 10 });
        assert.deepEqual([p.msgs.length, p.more, p.msgs[0].gseq], [5, false, 26]);

        // 30 behind, more than csync_max_behind (20): the newest page, reset
        p = await kim.c.csync('news', { from: 0, limit: 5 });
        assert.equal(p.reset, true);
        assert.deepEqual(p.msgs.map((x) => x.body), ['news 25', 'news 26', 'news 27', 'news 28', 'news 29']);

        // after its csync, kim gets the channel's new messages live, with their gseq
        // (the server puts kim's connection in the channel's live room right
        // after the page: until that is done a message may pass it by, so
        // jo sends until one comes, as a client would csync on a gap)
        const got = [];
        kim.c.on('channel', (m) => got.push(m));
        let sent = null;
        for (let i = 0; i < 20 && got.length === 0; i++) {
            sent = await jo.c.sendGroup('news', `live ${i}`);
            for (let t = 0; t < 25 && got.length === 0; t++) await sleep(20);
        }
        assert.ok(got.length > 0, 'no live channel message');
        const lm = got.at(-1);
        assert.deepEqual([lm.group, lm.from, lm.conv], ['news', 'jo', 'g:news']);
        assert.ok(lm.gseq > 30 && lm.gseq <= sent.gseq, `gseq ${lm.gseq}`);
        assert.equal(lm.body, `live ${lm.gseq - 31}`);

        await assert.rejects(lee.c.csync('news'), (e) => e.code === 4040);
        await assert.rejects(lee.c.csync('nothing'), (e) => e.code === 4041);
        // a group's log reads the same way (its messages also came into the inboxes)
        await zimctl(server, 'groups', 'create', '--app', 'demo', '--group', 'plain', '--members', 'lee');
        await lee.c.sendGroup('plain', 'in the log');
        p = await lee.c.csync('plain');
        assert.deepEqual(p.msgs.map((x) => [x.body, x.gseq]), [['in the log', 1]]);
        await closeAll();
    });

    test('a push from the backend (HTTP API) arrives as a push event', async () => {
        assert.ok(server.api, `no api= in the ready line:\n${server.log}`);
        const [mia] = await users(['mia']);
        const key = readFileSync(join(server.dataDir, 'app-demo.apikey'), 'utf8').trim();
        const res = await fetch(`${server.api}/v1/push/users`, {
            method: 'POST',
            headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
            body: JSON.stringify({ users: ['mia'], data: { text: 'from the backend', n: 7 } }),
        });
        assert.equal(res.status, 200);
        assert.deepEqual(await res.json(), { connections: 1, users: { mia: 1 } });
        await waitFor(() => mia.r.pushes.length === 1, { what: 'push' });
        assert.deepEqual(mia.r.pushes[0].body, { text: 'from the backend', n: 7 });
        assert.equal(typeof mia.r.pushes[0].ts, 'number');
        await closeAll();
    });

    test('a mark made before connecting is written once authenticated', async () => {
        const [nia, oz] = await users(['nia'], ['oz']);
        await oz.c.send('nia', 'one');
        await waitFor(() => nia.r.messages.length === 1, { what: 'nia gets it' });
        // queued, written after auth_ok, answered
        const late = client('nia', { device: 'tablet' });
        const pending = late.read(peerConv('nia', 'oz'), 1);
        await late.connect();
        assert.equal((await pending).read, 1);
        await waitFor(() => oz.r.receipts.some((x) => x.user === 'nia' && x.read === 1), { what: 'oz sees the read' });
        await closeAll();
    });

    test('a signal to a user with no connection is dropped; the next one reaches its user', async () => {
        // (the router once passed NULL to qsort for it: zim-server halted under UBSan)
        const [pat, quin] = await users(['pat'], ['quin']);
        const got = [];
        quin.c.on('signal', (x) => got.push(x));
        assert.ok(pat.c.signal('nobody_here', { zim: 'typing' }));
        assert.ok(pat.c.signal('quin', { zim: 'typing' }));
        await waitFor(() => got.length === 1, { what: 'the signal to quin' });
        assert.deepEqual(got[0], { from: 'pat', body: { zim: 'typing' } });
        assert.deepEqual((await pat.c.convs()).convs, []);
        await closeAll();
    });

    // Last: a server built with ASan+UBSan says so in its log (LeakSanitizer
    // at the clean exit); none of that is allowed.
    test('the server logged no sanitizer report', async () => {
        await closeAll();
        await server.kill('SIGTERM');
        const reports = server.log.split('\n').filter((l) => /AddressSanitizer|LeakSanitizer|runtime error:/.test(l));
        assert.deepEqual(reports, []);
    });
});
