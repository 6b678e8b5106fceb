// A small in-process stand-in for zim's gateway, speaking docs/PROTOCOL.md
// over `ws`, with knobs to misbehave (lost acks, skipped live deliveries,
// refused tokens, silent pongs). It lets the client's reconnect, retry, gap
// and dedupe logic be tested deterministically; integration.test.mjs runs the
// same scenarios against the real zim-server.
import { WebSocketServer } from 'ws';
import { createHmac } from 'node:crypto';
import { encodeFrame, concat, decodeFramesLenient } from '../../dist/index.js';

export const SECRET = 'mock-secret-0123456789';

// Verifies an HS256 token; returns its claims or null.
export function verifyToken(token, secret = SECRET) {
    const parts = String(token ?? '').split('.');
    if (parts.length !== 3) return null;
    const sig = createHmac('sha256', secret).update(`${parts[0]}.${parts[1]}`).digest('base64url');
    if (sig !== parts[2]) return null;
    try {
        const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
        if (claims.exp < Date.now() / 1000) return null;
        return claims;
    } catch {
        return null;
    }
}

export class MockServer {
    constructor() {
        this.inbox = new Map(); // uid -> [msg...] (index = seq-1)
        this.cids = new Map(); // uid + '\0' + cid -> ack
        this.cursors = new Map(); // uid/device -> seq
        this.conns = new Set(); // { ws, uid, device }
        this.received = []; // every frame received, with { uid, frame, message } (message = ws message index)
        this.messages = 0; // WebSocket messages received
        this.nextId = 250772402995204096n;
        // knobs
        this.refuseTokens = false; // 403 every upgrade
        this.dropAcks = 0; // commit the next N sends but do not ack them
        this.skipLive = new Set(); // uids whose live deliveries are skipped
        this.silentPongs = false; // do not answer pings
        this.failNext = []; // codes to answer the next sends with, instead of storing
        this.duplicateLive = false; // deliver every live msg twice
        this.failSyncs = 0; // answer the next N syncs with 5030
        this.authRefusal = 4011; // the code a refused auth frame gets (4011, 4012, 4016-4018)
        this.staleSyncs = new Map(); // uid -> N: that user's next N syncs of a non-empty inbox miss its newest message (a live msg ahead of what sync reads)
        this.pageBytes = 0; // bound sync/history pages by their messages' encoded bytes (0: by count only)
        this.closeAfterPages = 0; // close the connection right after the Nth page from now (0: never)
        this.closeOnHistory = 0; // close the connection instead of answering the next N histories
        this.marks = new Map(); // uid + '\0' + conv -> { read, delivered }
        this.cutOnMark = 0; // close the connection instead of answering the next N read/delivered
        this.busyMarks = 0; // answer the next N read/delivered with 4029 (no cid, no rid: as the gateway does)
        this.holdConvs = false; // keep convs requests unanswered until releaseConvs()
        this.held = []; // the held convs answers
    }

    // Answers every held convs request.
    releaseConvs() {
        this.holdConvs = false;
        for (const answer of this.held.splice(0)) answer();
    }

    async start(port = 0) {
        this.wss = new WebSocketServer({
            port,
            host: '127.0.0.1',
            path: '/ws',
            verifyClient: (info, cb) => {
                const u = new URL(info.req.url, 'http://x');
                const token = u.searchParams.get('token');
                if (this.refuseTokens || (token !== null && !verifyToken(token))) return cb(false, 403, 'Forbidden');
                cb(true);
            },
        });
        await new Promise((resolve) => this.wss.once('listening', resolve));
        this.port = this.wss.address().port;
        this.url = `ws://127.0.0.1:${this.port}/ws`;
        this.wss.on('connection', (ws, req) => this.onConnection(ws, req));
        return this;
    }

    // Terminates every connection abruptly (like a crash), keeps the data.
    killConnections() {
        for (const c of this.conns) c.ws.terminate();
        this.conns.clear();
    }

    async stop() {
        this.killConnections();
        await new Promise((resolve) => this.wss.close(resolve));
    }

    onConnection(ws, req) {
        const u = new URL(req.url, 'http://x');
        const c = { ws, uid: null, device: u.searchParams.get('device') ?? 'default', out: [] };
        const token = u.searchParams.get('token');
        this.conns.add(c);
        ws.on('close', () => this.conns.delete(c));
        if (token !== null) this.authOk(c, verifyToken(token));
        ws.on('message', (data, isBinary) => {
            this.messages++;
            if (!isBinary) return this.write(c, { op: 'error', code: 4000, text: 'text message' });
            const { frames, error } = decodeFramesLenient(new Uint8Array(data));
            for (const f of frames) this.onFrame(c, f);
            if (error) this.write(c, { op: 'error', code: 4000, text: 'malformed' });
        });
    }

    authOk(c, claims) {
        c.uid = claims.sub;
        this.write(c, { op: 'auth_ok', app: claims.app, uid: c.uid, device: c.device });
    }

    write(c, frame) {
        c.out.push(encodeFrame(frame));
        if (c.out.length === 1) {
            queueMicrotask(() => {
                const out = c.out;
                c.out = [];
                if (c.ws.readyState === 1) c.ws.send(concat(out));
            });
        }
    }

    // The first messages of msgs that fit pageBytes (at least one).
    bound(msgs) {
        if (!this.pageBytes) return msgs;
        let bytes = 0;
        let n = 0;
        for (const m of msgs) {
            bytes += encodeFrame(m).length;
            if (n > 0 && bytes > this.pageBytes) break;
            n++;
        }
        return msgs.slice(0, n);
    }

    // Writes a page; closes the connection after it if closeAfterPages says so.
    page(c, frame) {
        this.write(c, frame);
        if (this.closeAfterPages > 0 && --this.closeAfterPages === 0)
            queueMicrotask(() => queueMicrotask(() => c.ws.close(4000, 'test: cut after a page')));
    }

    box(uid) {
        if (!this.inbox.has(uid)) this.inbox.set(uid, []);
        return this.inbox.get(uid);
    }

    onFrame(c, f) {
        this.received.push({ uid: c.uid, frame: f, message: this.messages });
        if (f.op === 'auth') {
            if (c.uid) return this.write(c, { op: 'error', code: 4013, text: 'already authed' });
            const claims = this.refuseTokens ? null : verifyToken(f.token);
            if (!claims) return this.write(c, { op: 'error', code: this.authRefusal, text: 'token refused' });
            if (f.device) c.device = f.device;
            return this.authOk(c, claims);
        }
        if (f.op === 'ping') {
            if (!this.silentPongs) this.write(c, f.t === undefined ? { op: 'pong' } : { op: 'pong', t: f.t });
            return;
        }
        if (!c.uid) return this.write(c, { op: 'error', code: 4010, text: 'auth required' });
        switch (f.op) {
            case 'send':
                return this.onSend(c, f);
            case 'sync': {
                if (this.failSyncs > 0) {
                    this.failSyncs--;
                    return this.write(c, { op: 'error', code: 5030, text: 'unavailable', rid: f.rid });
                }
                const key = `${c.uid}/${c.device}`;
                const since = f.since ?? this.cursors.get(key) ?? 0;
                const limit = Math.min(f.limit ?? 100, 1000);
                let box = this.box(c.uid);
                const stale = this.staleSyncs.get(c.uid) ?? 0;
                if (stale > 0 && box.length > 0) {
                    this.staleSyncs.set(c.uid, stale - 1);
                    box = box.slice(0, -1);
                }
                const msgs = this.bound(box.slice(since, since + limit));
                return this.page(c, { op: 'page', rid: f.rid, more: since + msgs.length < box.length, msgs });
            }
            case 'cursor': {
                const key = `${c.uid}/${c.device}`;
                this.cursors.set(key, Math.max(this.cursors.get(key) ?? 0, f.seq));
                return;
            }
            case 'history': {
                if (this.closeOnHistory > 0) {
                    this.closeOnHistory--;
                    return c.ws.close(4000, 'test: no answer');
                }
                const conv = `p:${[c.uid, f.peer].sort().join(':')}`;
                let msgs = this.box(c.uid).filter((m) => m.conv === conv).reverse();
                if (f.before) msgs = msgs.filter((m) => m.id < BigInt(f.before));
                const limit = f.limit ?? 100;
                const page = this.bound(msgs.slice(0, limit)).map(({ seq, ...m }) => m);
                return this.page(c, { op: 'page', rid: f.rid, more: msgs.length > page.length, msgs: page });
            }
            case 'read':
            case 'delivered': {
                if (this.cutOnMark > 0) {
                    this.cutOnMark--;
                    return c.ws.terminate();
                }
                if (this.busyMarks > 0) {
                    this.busyMarks--;
                    return this.write(c, { op: 'error', code: 4029, text: 'rate limited' });
                }
                const key = `${c.uid}\0${f.conv}`;
                const m = this.marks.get(key) ?? { read: 0, delivered: 0 };
                if (f.op === 'read') m.read = Math.max(m.read, f.seq);
                m.delivered = Math.max(m.delivered, m.read, f.op === 'delivered' ? f.seq : 0);
                this.marks.set(key, m);
                return this.write(c, { op: 'receipt', conv: f.conv, user: c.uid, read: m.read, delivered: m.delivered });
            }
            case 'convs': {
                const answer = () => this.write(c, { op: 'convs', rid: f.rid, more: false, convs: [] });
                if (this.holdConvs) this.held.push(answer);
                else answer();
                return;
            }
            default:
                return this.write(c, { op: 'error', code: 4003, text: 'unknown op' });
        }
    }

    onSend(c, f) {
        if (f.group !== undefined) return this.onGroupSend(c, f);
        if (typeof f.to !== 'string' || !/^[A-Za-z0-9_.@-]{1,64}$/.test(f.to))
            return this.write(c, { op: 'error', code: 4004, text: 'bad recipient', cid: f.cid });
        const key = `${c.uid}\0${f.cid}`;
        const old = this.cids.get(key);
        if (old) return this.write(c, old);
        if (this.failNext.length) {
            const code = this.failNext.shift();
            return this.write(c, { op: 'error', code, text: `failure ${code}`, cid: f.cid });
        }
        const id = this.nextId++;
        const ts = Date.now();
        const conv = `p:${[c.uid, f.to].sort().join(':')}`;
        const base = { id, from: c.uid, to: f.to, conv, body: f.body, ts };
        const mine = this.box(c.uid);
        const own = { seq: mine.length + 1, ...base };
        mine.push(own);
        let theirs = own;
        if (f.to !== c.uid) {
            const box = this.box(f.to);
            theirs = { seq: box.length + 1, ...base };
            box.push(theirs);
        }
        const ack = { op: 'ack', cid: f.cid, id, seq: own.seq, ts };
        this.cids.set(key, ack);
        if (this.dropAcks > 0) this.dropAcks--;
        else this.write(c, ack);
        for (const d of this.conns) {
            if (!d.uid || this.skipLive.has(d.uid)) continue;
            if (d.uid === f.to || (d.uid === c.uid && d !== c)) {
                const m = { op: 'msg', ...(d.uid === f.to ? theirs : own) };
                this.write(d, m);
                if (this.duplicateLive) this.write(d, m);
            }
        }
    }
    // Groups (docs/PROTOCOL.md): this.groups maps a group id to its members;
    // each member's inbox gets the message with its own seq, the ack its gseq.
    onGroupSend(c, f) {
        const members = (this.groups ??= new Map()).get(f.group);
        if (!members) return this.write(c, { op: 'error', code: 4041, text: 'no such group', cid: f.cid });
        if (!members.includes(c.uid))
            return this.write(c, { op: 'error', code: 4040, text: 'not a member', cid: f.cid });
        const key = `${c.uid}\0${f.cid}`;
        const old = this.cids.get(key);
        if (old) return this.write(c, old);
        const id = this.nextId++;
        const ts = Date.now();
        this.gseqs ??= new Map();
        const gseq = (this.gseqs.get(f.group) ?? 0) + 1;
        this.gseqs.set(f.group, gseq);
        const copies = new Map();
        for (const u of members) {
            const box = this.box(u);
            const m = { seq: box.length + 1, id, from: c.uid, to: f.group, conv: `g:${f.group}`, body: f.body, ts, group: f.group };
            box.push(m);
            copies.set(u, m);
        }
        const ack = { op: 'ack', cid: f.cid, id, seq: copies.get(c.uid).seq, ts, gseq };
        this.cids.set(key, ack);
        this.write(c, ack);
        for (const d of this.conns)
            if (d.uid && d !== c && copies.has(d.uid)) this.write(d, { op: 'msg', ...copies.get(d.uid) });
    }
}
