// zim demo chat: pick a name, get a development token from /dev/token,
// chat 1:1. Contacts are the users you have chatted with (kept in
// localStorage); messages that arrived while away come in through the SDK's
// auto-sync; each conversation shows its history, older pages on demand.
// A message of yours shows "sent" once the server acked it (stored durably)
// and "delivered" once the peer's client got it.
//
// The protocol has neither delivery receipts nor a presence query, so the
// page builds both from ordinary messages whose body is a small control map
// (`{zim: "rcpt", ids: [...]}`, `{zim: "here"}`, `{zim: "bye"}`), hidden from
// the conversation:
// - a client that receives messages (live or synced after being away) sends
//   their sender one `rcpt` naming their ids: that is "delivered";
// - on (re)connect and when a chat is opened, the page sends `here` to its
//   contacts (at most 20); a peer that gets a live `here` answers once with
//   `here`; `bye` on sign-out or page close. A contact counts as online after
//   a live `here`, message or `rcpt` from it, and offline after `bye` or when
//   a message to it stays undelivered for 10 s.
// These control messages are stored like any message (they show up in
// history and sync; the page skips them), which is fine for a demo and not
// how a product should do it.
//
// Served by the gateway at / (zim-server --www sdk/js/demo) with the SDK
// bundle beside it at /zim-client.js (npm run build writes demo/zim-client.js).
// Query parameters: ?uid=NAME signs in at once; ?ws=URL overrides the
// WebSocket URL (default: ws(s)://<this host>/ws).
import { ZimClient, newCid } from './zim-client.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const wsUrl = params.get('ws') ?? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;

let me = null;
let client = null;
let active = null; // peer of the open conversation
let contacts = new Map(); // peer -> { unread, last }
let convs = new Map(); // peer -> { msgs: Map(key -> entry), more, loaded, oldest, delivered: Set(id) }
let online = new Map(); // peer -> true (online) / false (offline); absent: unknown
let announced = new Set(); // peers told `here` since the last connect
const receipts = new Map(); // peer -> ids (strings) to confirm
let receiptTimer = null;
const LIVE_MS = 20000; // a control message younger than this is live, not replayed

// ---------------------------------------------------------------- storage

const store = {
    get(key, fallback) {
        try {
            const v = localStorage.getItem(key);
            return v === null ? fallback : JSON.parse(v);
        } catch {
            return fallback;
        }
    },
    set(key, value) {
        try {
            localStorage.setItem(key, JSON.stringify(value));
        } catch {
            // private mode or full: the demo works without it
        }
    },
};

function saveContacts() {
    store.set(`zim.contacts.${me}`, [...contacts].map(([peer, c]) => [peer, c.last]));
}

// ---------------------------------------------------------------- model

function conv(peer) {
    let c = convs.get(peer);
    if (!c) {
        c = { msgs: new Map(), more: false, loaded: false, oldest: undefined, delivered: new Set() };
        convs.set(peer, c);
    }
    return c;
}

function touchContact(peer, ts, unread) {
    const c = contacts.get(peer) ?? { unread: 0, last: 0 };
    c.last = Math.max(c.last, ts ?? 0);
    if (unread) c.unread++;
    contacts.set(peer, c);
    saveContacts();
    renderContacts();
}

// Adds or updates a message of a conversation; entries are keyed by server
// id, or by cid while a send of ours waits for its ack.
function put(peer, entry) {
    const c = conv(peer);
    if (entry.id !== undefined) {
        const key = String(entry.id);
        const had = c.msgs.get(key);
        const merged = { ...had, ...entry };
        if (had?.status === 'delivered' || c.delivered.has(key)) merged.status = 'delivered';
        c.msgs.set(key, merged);
        if (entry.cid) c.msgs.delete(`cid:${entry.cid}`);
    } else {
        c.msgs.set(`cid:${entry.cid}`, entry);
    }
    if (peer === active) renderMessages();
}

function peerOf(m) {
    return m.from === me ? m.to : m.from;
}

// ---------------------------------------------------------------- receipts and presence

function isControl(body) {
    return body !== null && typeof body === 'object' && !Array.isArray(body) && !(body instanceof Uint8Array) && typeof body.zim === 'string';
}

function setOnline(peer, on) {
    if (online.get(peer) === on) return;
    online.set(peer, on);
    renderContacts();
}

function sendControl(peer, body) {
    if (!client) return;
    client.send(peer, body).catch((err) => console.warn('zim control', err.code));
}

// Tells peer we are here, once per connection.
function announce(peer) {
    if (!client || client.state !== 'authenticated' || announced.has(peer)) return;
    announced.add(peer);
    sendControl(peer, { zim: 'here' });
}

function markDelivered(peer, ids) {
    const c = conv(peer);
    for (const id of ids) {
        const key = String(id);
        c.delivered.add(key);
        const e = c.msgs.get(key);
        if (e && e.from === me) e.status = 'delivered';
    }
    if (peer === active) renderMessages();
}

// A control message of a conversation; live: it just happened (not history).
function control(peer, m, live) {
    if (m.body.zim === 'rcpt' && m.from === peer && Array.isArray(m.body.ids)) {
        markDelivered(peer, m.body.ids);
        if (live) setOnline(peer, true);
    } else if (m.body.zim === 'here' && m.from === peer && live) {
        touchContact(peer, 0, false);
        setOnline(peer, true);
        announce(peer);
    } else if (m.body.zim === 'bye' && m.from === peer && live) {
        setOnline(peer, false);
    }
}

function queueReceipt(peer, id) {
    const ids = receipts.get(peer) ?? [];
    ids.push(String(id));
    receipts.set(peer, ids);
    receiptTimer ??= setTimeout(() => {
        receiptTimer = null;
        for (const [p, list] of receipts) sendControl(p, { zim: 'rcpt', ids: list });
        receipts.clear();
    }, 200);
}

// ---------------------------------------------------------------- rendering

function text(body) {
    if (typeof body === 'string') return body;
    if (body && typeof body === 'object' && typeof body.text === 'string') return body.text;
    return JSON.stringify(body, (_, v) => (typeof v === 'bigint' ? String(v) : v));
}

function time(ts) {
    return ts ? new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '';
}

function renderContacts() {
    const ul = $('contacts');
    ul.replaceChildren();
    const list = [...contacts].sort((a, b) => b[1].last - a[1].last);
    for (const [peer, c] of list) {
        const li = document.createElement('li');
        li.dataset.peer = peer;
        li.className = peer === active ? 'active' : '';
        const on = online.get(peer);
        li.dataset.online = on === true ? 'yes' : on === false ? 'no' : 'unknown';
        const name = document.createElement('span');
        name.className = 'peer';
        name.textContent = peer;
        name.title = on === true ? 'online' : on === false ? 'offline' : 'not seen since you signed in';
        li.append(name);
        if (c.unread) {
            const badge = document.createElement('span');
            badge.className = 'unread';
            badge.textContent = String(c.unread);
            li.append(badge);
        }
        li.onclick = () => open(peer);
        ul.append(li);
    }
}

function renderMessages() {
    const box = $('messages');
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.replaceChildren();
    const c = conv(active);
    if (c.more) {
        const older = document.createElement('button');
        older.className = 'older';
        older.textContent = 'Older messages';
        older.onclick = () => loadHistory(active);
        box.append(older);
    }
    const entries = [...c.msgs.values()].sort((x, y) => {
        if (x.id === undefined || y.id === undefined) return (x.id === undefined) - (y.id === undefined) || x.ts - y.ts;
        return x.id < y.id ? -1 : x.id > y.id ? 1 : 0;
    });
    if (!entries.length && !c.more) {
        const p = document.createElement('p');
        p.className = 'empty';
        p.textContent = c.loaded ? `No messages with ${active} yet.` : 'Loading…';
        box.append(p);
    }
    for (const e of entries) {
        const div = document.createElement('div');
        div.className = `msg${e.from === me ? ' me' : ''}${e.status === 'failed' ? ' failed' : ''}`;
        div.dataset.status = e.status ?? '';
        div.textContent = text(e.body);
        const meta = document.createElement('span');
        meta.className = 'meta';
        const state =
            e.from !== me ? '' : e.status === 'sending' ? ' · sending…' : e.status === 'failed' ? ` · not sent (${e.error})` : e.status === 'delivered' ? ' · delivered' : ' · sent';
        meta.textContent = time(e.ts) + state;
        div.append(meta);
        box.append(div);
    }
    if (atBottom) box.scrollTop = box.scrollHeight;
}

function setStatus(state, detail) {
    const s = $('status');
    s.dataset.state = state;
    const label = { connecting: 'connecting…', connected: 'signing in…', authenticated: 'online', disconnected: 'reconnecting…', closed: 'offline' }[state];
    s.textContent = label + (detail ? ` — ${detail}` : '');
}

// ---------------------------------------------------------------- actions

async function loadHistory(peer) {
    const c = conv(peer);
    try {
        const page = await client.history(peer, { limit: 30, before: c.loaded ? c.oldest : undefined });
        for (const m of page.msgs) {
            if (isControl(m.body)) control(peer, m, false);
            else put(peer, { ...m, status: m.from === me && c.delivered.has(String(m.id)) ? 'delivered' : 'sent' });
        }
        // The next page starts before this page's oldest entry, control
        // messages included (else a page of them would come back forever).
        const last = page.msgs.at(-1);
        if (last && (c.oldest === undefined || last.id < c.oldest)) c.oldest = last.id;
        c.more = page.more;
    } catch (err) {
        console.warn('history', err);
    }
    c.loaded = true;
    if (peer === active) renderMessages();
}

function open(peer) {
    active = peer;
    const c = contacts.get(peer);
    if (c) c.unread = 0;
    else touchContact(peer, 0, false);
    $('conv-title').textContent = peer;
    $('compose').hidden = false;
    renderContacts();
    renderMessages();
    if (!conv(peer).loaded) loadHistory(peer);
    announce(peer);
    $('text').focus();
}

function send(peer, body) {
    const cid = newCid();
    put(peer, { cid, from: me, to: peer, body, ts: Date.now(), status: 'sending' });
    touchContact(peer, Date.now(), false);
    client.send(peer, body, { cid }).then(
        (ack) => {
            put(peer, { cid, id: ack.id, from: me, to: peer, body, ts: ack.ts, status: 'sent' });
            // no receipt within 10 s: the peer is not online
            setTimeout(() => {
                if (conv(peer).msgs.get(String(ack.id))?.status === 'sent') setOnline(peer, false);
            }, 10000);
        },
        (err) => put(peer, { ...conv(peer).msgs.get(`cid:${cid}`), status: 'failed', error: err.code }),
    );
}

async function getToken() {
    const res = await fetch(`/dev/token?uid=${encodeURIComponent(me)}`, { cache: 'no-store' });
    if (!res.ok) throw new Error(`/dev/token answered HTTP ${res.status}`);
    const { token } = await res.json();
    return token;
}

function start(uid) {
    me = uid;
    contacts = new Map(store.get(`zim.contacts.${me}`, []).map(([peer, last]) => [peer, { unread: 0, last }]));
    convs = new Map();
    online = new Map();
    announced = new Set();
    active = null;
    $('login').hidden = true;
    $('chat').hidden = false;
    $('logout').hidden = false;
    $('me').textContent = me;
    renderContacts();
    client = new ZimClient(wsUrl, {
        getToken,
        device: 'web',
        storage: {
            load: () => store.get(`zim.lastSeq.${me}`, null),
            save: (seq) => store.set(`zim.lastSeq.${me}`, seq),
        },
    });
    client.on('state', (state, _prev, detail) => {
        setStatus(state, state === 'authenticated' ? '' : detail.reason);
        if (state === 'authenticated') {
            announced = new Set();
            const recent = [...contacts].sort((a, b) => b[1].last - a[1].last).slice(0, 20);
            for (const [peer] of recent) announce(peer);
        }
    });
    client.on('error', (err) => {
        console.warn('zim', err.code, err.message);
        if (client.state !== 'authenticated') setStatus(client.state, err.message.replace(/^zim: /, ''));
    });
    client.on('message', (m) => {
        const peer = peerOf(m);
        if (isControl(m.body)) {
            control(peer, m, Date.now() - m.ts < LIVE_MS);
            return;
        }
        put(peer, { ...m, status: 'sent' });
        touchContact(peer, m.ts, peer !== active && m.from !== me);
        if (m.from !== me) {
            queueReceipt(peer, m.id);
            if (Date.now() - m.ts < LIVE_MS) setOnline(peer, true);
        }
    });
    client.connect();
}

function sayBye() {
    if (client?.state === 'authenticated') for (const peer of announced) sendControl(peer, { zim: 'bye' });
}

async function stop() {
    sayBye();
    await new Promise((r) => setTimeout(r, 100)); // let the byes go out
    await client?.close();
    client = null;
    me = null;
    $('chat').hidden = true;
    $('logout').hidden = true;
    $('login').hidden = false;
    $('me').textContent = '';
    setStatus('closed');
    sessionStorage.removeItem('zim.uid');
}

$('login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const uid = $('uid').value.trim();
    sessionStorage.setItem('zim.uid', uid);
    start(uid);
});

$('new-chat').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const peer = $('peer').value.trim();
    $('peer').value = '';
    if (peer && peer !== me) open(peer);
});

$('compose').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('text').value;
    if (!t.trim() || !active) return;
    $('text').value = '';
    send(active, t);
});

$('logout').addEventListener('click', () => stop());

addEventListener('pagehide', sayBye);

const initial = params.get('uid') ?? sessionStorage.getItem('zim.uid');
if (initial) start(initial);
