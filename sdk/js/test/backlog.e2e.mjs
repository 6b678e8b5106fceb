// Large backlogs against a REAL zim-server (issue 10 #1), run by
// tests/test_backlog.sh (not by `npm test`: it needs the server's page
// bounds). An offline user's backlog of 100 messages of ~10 KB, and one of
// every size up to max_frame, must sync to the end with the client's default
// options (follow `more` until false, whatever each page holds), once, in
// order, on one connection; history() must page through the same backlogs.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { ZimClient } from '../dist/index.js';
import { clientOptions, startServer, tempDataDir, removeDir, unavailable } from './helpers/zim-server.mjs';
import { waitFor, record, contiguous } from './helpers/util.mjs';

const skip = unavailable();
if (skip && (process.env.ZIM_SERVER || process.env.ZIM_BIN)) throw new Error(skip);

// The largest body whose send frame fits the server's max_frame (65536):
// the frame adds ~60 bytes of keys, recipient and cid.
const MAX_BODY = 65400;

// Body of message n (from 1): "m000001 xxx…" of exactly size characters.
function body(n, size) {
    const head = `m${String(n).padStart(6, '0')} `;
    return (head + 'x'.repeat(Math.max(0, size - head.length))).slice(0, size);
}

describe('backlogs against zim-server', { skip: skip ?? false, timeout: 300000 }, () => {
    let dir;
    let server;
    const clients = [];

    function client(uid, opts = {}) {
        const c = new ZimClient(server.url, clientOptions(server, uid, {
            sendTimeout: 120000,
            requestTimeout: 60000,
            ...opts,
        }));
        clients.push(c);
        return c;
    }

    // alice sends count messages to `to`, one at a time (each after the
    // previous ack), so `to`'s inbox holds them in order.
    async function fill(to, count, sizes) {
        const a = client('alice');
        await a.connect();
        for (let n = 1; n <= count; n++) await a.send(to, body(n, sizes[(n - 1) % sizes.length]));
        await a.close();
    }

    // Checks messages 1..count, in order, with the sizes fill gave them.
    function checkBodies(msgs, count, sizes, newestFirst) {
        assert.equal(msgs.length, count);
        msgs.forEach((m, i) => {
            const n = newestFirst ? count - i : i + 1;
            assert.equal(m.body, body(n, sizes[(n - 1) % sizes.length]), `message ${n}`);
        });
    }

    // The user syncs the backlog from a fresh device with default options.
    async function syncAll(uid, count, sizes) {
        const c = client(uid, { device: `fresh-${uid}` });
        const r = record(c);
        await c.connect();
        await waitFor(() => {
            // a page the server cut the connection for (4090) would come again, forever
            if (r.states.includes('disconnected')) throw new Error(`the connection dropped after ${r.messages.length} messages`);
            return r.messages.length >= count;
        }, { timeout: 120000, what: `${count} messages synced` });
        assert.equal(await c.sync(), count); // nothing further: the sync had reached the end
        checkBodies(r.messages, count, sizes, false);
        assert.ok(contiguous(r.messages.map((m) => m.seq)));
        assert.deepEqual(r.errors, []);
        assert.deepEqual(r.gaps, []);
        assert.deepEqual(r.states.filter((s) => s === 'disconnected'), []);
        return c;
    }

    // Pages the conversation with `peer` with history(), following `before`.
    // A page the server cut the connection for would be asked again until
    // requestTimeout: closing at the first drop fails at once instead.
    async function historyAll(c, peer, limit) {
        const all = [];
        let before;
        let dropped = false;
        const off = c.on('state', (s) => {
            if (s === 'disconnected' && !dropped) {
                dropped = true;
                void c.close();
            }
        });
        for (let pages = 1; ; pages++) {
            let page;
            try {
                page = await c.history(peer, { before, limit });
            } catch (err) {
                if (dropped) throw new Error(`the connection dropped at page ${pages} (${all.length} messages)`);
                throw err;
            }
            all.push(...page.msgs);
            if (!page.more) {
                off();
                return { msgs: all, pages };
            }
            assert.ok(page.msgs.length > 0, 'a page that says more holds something');
            before = page.msgs.at(-1).id;
            assert.ok(pages < 10000);
        }
    }

    before(async () => {
        dir = tempDataDir();
        server = await startServer(dir);
    });

    after(async () => {
        await Promise.all(clients.splice(0).map((c) => c.close()));
        if (server) await server.kill('SIGTERM');
        if (server && process.env.ZIM_JS_SERVER_LOG) writeFileSync(process.env.ZIM_JS_SERVER_LOG, server.log);
        removeDir(dir);
    });

    const big = [10450]; // ~10 KB: 100 of them are one page of just over 1 MiB on a server without byte-bounded pages
    const mixed = [8, MAX_BODY, 300, 4096, 30000, 10450, 65000, 1000, 50000, 20];

    test('100 messages of ~10 KB sync to the end with the default options', async () => {
        await fill('bob', 100, big);
        await syncAll('bob', 100, big);
    });

    test('a mix of sizes up to max_frame syncs to the end with the default options', async () => {
        await fill('carol', 60, mixed);
        await syncAll('carol', 60, mixed);
    });

    test('history() pages through both backlogs, newest first, once', async () => {
        // autoSync off: these clients only page history
        const b = client('bob', { autoSync: false });
        await b.connect();
        for (const limit of [undefined, 1000]) {
            const { msgs } = await historyAll(b, 'alice', limit);
            checkBodies(msgs, 100, big, true);
        }
        const c = client('carol', { autoSync: false });
        await c.connect();
        const { msgs } = await historyAll(c, 'alice', 1000);
        checkBodies(msgs, 60, mixed, true);
    });
});
