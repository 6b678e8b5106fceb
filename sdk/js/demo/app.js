// zim demo chat: pick a name, get a development token from /dev/token, and
// chat: 1:1 with anyone (type a name), in the group chats the app's backend
// put you in (listed by the SDK's groups()), and in the public room "lobby"
// with its live online count. Everything comes from the SDK:
// - unread badges from convs() when connected, then counted live, cleared
//   when a chat is opened (which sends `read` for it);
// - your 1:1 messages show "sending…", "sent" (acked: stored durably),
//   "delivered" (the peer's client got it: it sends `delivered`) and "read"
//   (the peer opened the chat), from the peer's `receipt` frames and, after a
//   reload, the peer cursors of convs();
// - "is typing…" from signals (at most one every 2 s while typing, shown
//   for 3 s), and presence from signals too: `here` to the 20 most recent
//   contacts on each (re)connect and when a chat is opened (answered once
//   with `here`), `bye` on sign-out and page close. A contact is online
//   after a live `here`, message or receipt, offline after `bye` or when a
//   message to it stays undelivered for 10 s. Signals are live only: nothing
//   of this is stored.
// - messages that arrived while away come by the SDK's auto-sync; a 1:1
//   chat loads its history, older pages on demand. The protocol has no
//   history of a group (its messages are in the inbox, read by sync), so a
//   group chat shows what came in since the page was opened; a channel is
//   read with csync() when opened, then its new messages come live
//   ('channel' events; a gap or every 30 s: csync again). The lobby is
//   live only.
//
// Served by the gateway at / (zim-server --www sdk/js/demo) with the SDK
// bundle beside it at /zim-client.js (npm run build writes demo/zim-client.js).
// Query parameters: ?uid=NAME signs in at once; ?ws=URL overrides the
// WebSocket URL (default: ws(s)://<this host>/ws).
import { ZimClient, newCid, peerConv } from './zim-client.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const wsUrl = params.get('ws') ?? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;

const LOBBY = 'lobby';
const LIVE_MS = 20000; // a message younger than this is live, not replayed
const TYPING_EVERY_MS = 2000; // at most one typing signal per peer this often
const TYPING_SHOW_MS = 3000; // how long "is typing…" stays after a signal

let me = null;
let client = null;
let active = null; // key of the open chat: a peer, `g:GROUP` or `#lobby`
let chats = new Map(); // key -> chat (see chat())
let online = new Map(); // peer -> true / false; absent: unknown
let announced = new Set(); // peers told `here` since the last connect
let seqCache = {}; // id (string) -> my inbox seq of my own messages, kept in localStorage
const pendingDelivered = new Map(); // conv -> highest seq to confirm
let deliveredTimer = null;
let convsTimer = null;
let channelTimer = null;
const typingSent = new Map(); // peer -> ms of the last typing signal sent

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
    const peers = [...chats.values()].filter((c) => c.kind === 'peer');
    store.set(`zim.contacts.${me}`, peers.map((c) => [c.name, c.last]));
}

// Remembers the inbox seq of a message of mine (receipts name seqs; history
// pages carry none), the newest 1000.
function rememberSeq(id, seq) {
    if (!seq) return;
    seqCache[String(id)] = seq;
    const keys = Object.keys(seqCache);
    if (keys.length > 1200) for (const k of keys.sort((a, b) => seqCache[a] - seqCache[b]).slice(0, 200)) delete seqCache[k];
    store.set(`zim.seqs.${me}`, seqCache);
}

// ---------------------------------------------------------------- model

// A chat: kind 'peer' (name: the other user), 'group' or 'channel' (name:
// the group id, key `g:NAME`), 'room' (key `#NAME`).
function chat(key) {
    let c = chats.get(key);
    if (!c) {
        const kind = key.startsWith('g:') ? 'group' : key.startsWith('#') ? 'room' : 'peer';
        c = {
            key,
            kind,
            name: kind === 'peer' ? key : key.slice(kind === 'room' ? 1 : 2),
            msgs: new Map(), // id or cid:... or r:N -> entry
            more: false,
            loaded: kind !== 'peer',
            oldest: undefined,
            last: 0, // ts of the last message, for the order of the list
            unread: 0,
            counted: 0, // highest inbox seq counted in unread
            lastSeq: 0, // highest inbox seq of the chat known
            readSent: 0, // highest seq sent in `read`
            peerRead: 0, // the peer's cursors, in my seqs
            peerDelivered: 0,
            gseq: 0, // channels: the last gseq read
            online: 0, // rooms: connections in it
        };
        chats.set(key, c);
    }
    return c;
}

function convOf(c) {
    return c.kind === 'peer' ? peerConv(me, c.name) : `g:${c.name}`;
}

function keyOf(m) {
    if (m.group) return `g:${m.group}`;
    return m.from === me ? m.to : m.from;
}

function touch(c, ts) {
    c.last = Math.max(c.last, ts ?? 0);
    if (c.kind === 'peer') saveContacts();
    renderLists();
}

// Adds or updates a message of a chat; entries are keyed by server id, or
// by cid while a send of ours waits for its ack.
function put(c, entry) {
    if (entry.id !== undefined) {
        const key = String(entry.id);
        const merged = { ...c.msgs.get(key), ...entry };
        if (merged.seq === undefined && seqCache[key]) merged.seq = seqCache[key];
        c.msgs.set(key, merged);
        if (entry.cid) c.msgs.delete(`cid:${entry.cid}`);
    } else {
        c.msgs.set(entry.key ?? `cid:${entry.cid}`, entry);
    }
    if (c.key === active) renderMessages();
}

// ---------------------------------------------------------------- receipts

// Confirms arrival of messages from others (batched, 200 ms).
function queueDelivered(conv, seq) {
    pendingDelivered.set(conv, Math.max(pendingDelivered.get(conv) ?? 0, seq));
    deliveredTimer ??= setTimeout(() => {
        deliveredTimer = null;
        for (const [cv, s] of pendingDelivered) client?.delivered(cv, s).catch((err) => console.warn('delivered', err.code));
        pendingDelivered.clear();
    }, 200);
}

// The open chat is read up to its newest message.
function markRead(c) {
    if (!client || c.kind === 'room' || c.kind === 'channel') return;
    let seq = c.lastSeq;
    for (const e of c.msgs.values()) if (e.seq && e.from !== me) seq = Math.max(seq, e.seq);
    if (seq <= c.readSent) return;
    c.readSent = seq;
    client.read(convOf(c), seq).catch((err) => {
        console.warn('read', err.code);
        c.readSent = 0;
    });
}

function onReceipt(r) {
    if (r.user === me) {
        // Another device of mine read something (or the answer to my own
        // read): the list says what is still unread.
        if (r.read) refreshConvsSoon();
        return;
    }
    // The peer's cursors, in my seqs.
    const c = chats.get(r.user);
    if (!c || convOf(c) !== r.conv) return;
    if (r.read) c.peerRead = Math.max(c.peerRead, r.read);
    c.peerDelivered = Math.max(c.peerDelivered, r.read ?? 0, r.delivered ?? 0);
    setOnline(c.name, true);
    if (c.key === active) renderMessages();
}

// The status of a message of mine in a 1:1 chat: by its seq against the
// peer's cursors; one whose seq is unknown (an old one from history) counts
// as covered when a covered message of known seq is not older.
function statusOf(c, e, covered) {
    if (e.status === 'sending' || e.status === 'failed') return e.status;
    if (c.kind !== 'peer') return 'sent';
    if (e.seq) return e.seq <= c.peerRead ? 'read' : e.seq <= c.peerDelivered ? 'delivered' : 'sent';
    if (covered.read !== undefined && e.id <= covered.read) return 'read';
    if (covered.delivered !== undefined && e.id <= covered.delivered) return 'delivered';
    return 'sent';
}

// Unread counts, last messages and the peers' cursors from the server.
async function loadConvs() {
    if (!client) return;
    let page;
    try {
        page = await client.convs({ limit: 100 });
    } catch (err) {
        console.warn('convs', err.code);
        return;
    }
    for (const e of page.convs) {
        const c = e.peer !== undefined ? chat(e.peer) : e.group !== undefined ? chat(`g:${e.group}`) : null;
        if (!c) continue;
        // The list's count, unless live messages came after its answer was made.
        if (e.seq >= c.counted) {
            c.unread = c.key === active ? 0 : e.unread;
            c.counted = e.seq;
        }
        c.lastSeq = Math.max(c.lastSeq, e.seq);
        c.peerRead = Math.max(c.peerRead, e.peer_read ?? 0);
        c.peerDelivered = Math.max(c.peerDelivered, e.peer_read ?? 0, e.peer_delivered ?? 0);
        c.preview = e.body;
        touch(c, e.ts);
        if (c.key === active) markRead(c);
    }
    if (chats.has(active)) renderMessages();
}

function refreshConvsSoon() {
    convsTimer ??= setTimeout(() => {
        convsTimer = null;
        loadConvs();
    }, 300);
}

async function loadGroups() {
    if (!client) return;
    try {
        for (const g of await client.groups()) {
            const c = chat(`g:${g.group}`);
            c.kind = g.kind === 'channel' ? 'channel' : 'group';
            c.members = g.members;
            c.head = g.gseq;
        }
    } catch (err) {
        console.warn('groups', err.code);
    }
    renderLists();
}

// ---------------------------------------------------------------- presence and typing

function setOnline(peer, on) {
    if (online.get(peer) === on) return;
    online.set(peer, on);
    renderLists();
}

// Tells peer we are here, once per connection.
function announce(peer) {
    if (!client || client.state !== 'authenticated' || announced.has(peer)) return;
    announced.add(peer);
    client.signal(peer, { zim: 'here' });
}

function onSignal(s) {
    const body = s.body;
    if (!body || typeof body !== 'object' || typeof body.zim !== 'string') return;
    if (body.zim === 'here') {
        touch(chat(s.from), 0);
        setOnline(s.from, true);
        announce(s.from);
    } else if (body.zim === 'bye') {
        setOnline(s.from, false);
    } else if (body.zim === 'typing') {
        const c = chat(s.from);
        setOnline(s.from, true);
        clearTimeout(c.typingTimer);
        c.typing = true;
        c.typingTimer = setTimeout(() => {
            c.typing = false;
            renderLists();
            renderTyping();
        }, TYPING_SHOW_MS);
        touch(c, 0);
        renderTyping();
    }
}

function stopTyping(c) {
    if (!c.typing) return;
    clearTimeout(c.typingTimer);
    c.typing = false;
    renderLists();
    renderTyping();
}

// Called on input in the message box: one signal per TYPING_EVERY_MS.
function typing() {
    const c = chats.get(active);
    if (!client || !c || c.kind !== 'peer') return;
    const now = Date.now();
    if (now - (typingSent.get(c.name) ?? 0) < TYPING_EVERY_MS) return;
    typingSent.set(c.name, now);
    client.signal(c.name, { zim: 'typing' });
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

// The list entry of a chat, made once and then updated in place: a list
// rebuilt while the user clicks (a count or a receipt came between the
// mouse's down and up) would lose the click.
function item(c, label, extra) {
    if (!c.li) {
        const li = document.createElement('li');
        const name = document.createElement('span');
        name.className = 'name';
        const count = document.createElement('span');
        count.className = 'count';
        const badge = document.createElement('span');
        badge.className = 'unread';
        li.append(name, count, badge);
        li.onclick = () => open(c.key);
        c.li = { li, name, count, badge };
    }
    const { li, name, count, badge } = c.li;
    li.className = c.key === active ? 'active' : '';
    name.textContent = label;
    count.hidden = !extra;
    count.textContent = extra ?? '';
    badge.hidden = !c.unread;
    badge.textContent = c.unread ? String(c.unread) : '';
    // the badge is in the DOM only while there is something unread
    if (!c.unread) badge.remove();
    else if (!badge.isConnected) li.append(badge);
    return li;
}

// Puts ul's entries in this order, moving only what is out of place.
function place(ul, lis) {
    lis.forEach((li, i) => {
        if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] ?? null);
    });
    while (ul.children.length > lis.length) ul.lastChild.remove();
}

function renderLists() {
    const rooms = [...chats.values()].filter((c) => c.kind === 'room');
    place($('rooms'), rooms.map((c) => {
        const li = item(c, `#${c.name}`, `${c.online} online`);
        li.dataset.room = c.name;
        li.dataset.onlineCount = String(c.online);
        return li;
    }));
    const gs = [...chats.values()].filter((c) => c.kind === 'group' || c.kind === 'channel').sort((a, b) => a.name.localeCompare(b.name));
    place($('groups'), gs.map((c) => {
        const li = item(c, c.name, c.kind === 'channel' ? 'channel' : undefined);
        li.dataset.group = c.name;
        li.dataset.kind = c.kind;
        return li;
    }));
    $('groups-title').hidden = gs.length === 0;
    const peers = [...chats.values()].filter((c) => c.kind === 'peer').sort((a, b) => b.last - a.last);
    place($('contacts'), peers.map((c) => {
        const li = item(c, c.name);
        li.dataset.peer = c.name;
        const on = online.get(c.name);
        li.dataset.online = on === true ? 'yes' : on === false ? 'no' : 'unknown';
        li.dataset.typing = c.typing ? 'yes' : 'no';
        c.li.name.classList.add('peer');
        c.li.name.title = on === true ? 'online' : on === false ? 'offline' : 'not seen since you signed in';
        return li;
    }));
}

function renderTyping() {
    const c = chats.get(active);
    const el = $('typing');
    const on = !!(c && c.kind === 'peer' && c.typing);
    el.hidden = !on;
    el.textContent = on ? `${c.name} is typing…` : '';
}

function renderTitle() {
    const c = chats.get(active);
    if (!c) return;
    const t = $('conv-title');
    t.textContent =
        c.kind === 'room' ? `#${c.name} · ${c.online} online` : c.kind === 'peer' ? c.name : `${c.name} (${c.kind}${c.members ? `, ${c.members} members` : ''})`;
}

function renderMessages() {
    const box = $('messages');
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.replaceChildren();
    const c = chat(active);
    renderTitle();
    if (c.more) {
        const older = document.createElement('button');
        older.className = 'older';
        older.textContent = 'Older messages';
        older.onclick = () => loadHistory(c);
        box.append(older);
    }
    const entries = [...c.msgs.values()].sort((x, y) => {
        if (c.kind === 'room') return x.n - y.n;
        if (c.kind === 'channel') return (x.gseq ?? Infinity) - (y.gseq ?? Infinity) || x.ts - y.ts;
        if (x.id === undefined || y.id === undefined) return (x.id === undefined) - (y.id === undefined) || x.ts - y.ts;
        return x.id < y.id ? -1 : x.id > y.id ? 1 : 0;
    });
    // The newest message of mine (by id) that each peer cursor covers.
    const covered = {};
    for (const e of entries) {
        if (e.from !== me || !e.seq || e.id === undefined) continue;
        if (e.seq <= c.peerRead && (covered.read === undefined || e.id > covered.read)) covered.read = e.id;
        if (e.seq <= c.peerDelivered && (covered.delivered === undefined || e.id > covered.delivered)) covered.delivered = e.id;
    }
    if (!entries.length && !c.more) {
        const p = document.createElement('p');
        p.className = 'empty';
        p.textContent = c.loaded ? (c.kind === 'room' ? `Nobody has said anything in #${c.name} since you came.` : `No messages in ${c.name} yet.`) : 'Loading…';
        box.append(p);
    }
    for (const e of entries) {
        const div = document.createElement('div');
        const status = e.from === me ? statusOf(c, e, covered) : '';
        div.className = `msg${e.from === me ? ' me' : ''}${status === 'failed' ? ' failed' : ''}`;
        div.dataset.status = status;
        if (c.kind !== 'peer' && e.from !== me) div.dataset.from = e.from ?? 'backend';
        div.textContent = text(e.body);
        const meta = document.createElement('span');
        meta.className = 'meta';
        const label = {
            '': '',
            sending: ' · sending…',
            failed: ` · not sent (${e.error})`,
            sent: ' · sent',
            delivered: ' · delivered',
            read: ' · read ✓✓',
        }[status];
        meta.textContent = time(e.ts) + (c.kind === 'room' && status === 'sent' ? '' : label);
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

async function loadHistory(c) {
    try {
        const page = await client.history(c.name, { limit: 30, before: c.oldest });
        for (const m of page.msgs) put(c, { ...m });
        const last = page.msgs.at(-1);
        if (last && (c.oldest === undefined || last.id < c.oldest)) c.oldest = last.id;
        c.more = page.more;
    } catch (err) {
        console.warn('history', err);
    }
    c.loaded = true;
    if (c.key === active) renderMessages();
}

// A channel's log after what was read (from its start: the server answers
// with the newest page and `reset` when that is too far behind).
async function loadChannel(c) {
    try {
        for (;;) {
            const page = await client.csync(c.name, { from: c.gseq, limit: 100 });
            if (page.reset) c.msgs.clear();
            for (const m of page.msgs) {
                put(c, { ...m });
                c.gseq = Math.max(c.gseq, m.gseq);
            }
            if (!page.more || !page.msgs.length) break;
        }
    } catch (err) {
        console.warn('csync', err.code);
    }
    c.loaded = true;
    if (c.key === active) renderMessages();
}

function open(key) {
    const c = chat(key);
    active = key;
    c.unread = 0;
    clearInterval(channelTimer);
    channelTimer = null;
    $('compose').hidden = false;
    $('text').placeholder = c.kind === 'room' ? `Message #${c.name} (everyone here sees it)` : 'Message';
    if (c.kind === 'peer') {
        touch(c, 0);
        if (!c.loaded) loadHistory(c);
        announce(c.name);
    } else if (c.kind === 'channel') {
        loadChannel(c);
        // new messages come live ('channel'); this only catches one lost last
        channelTimer = setInterval(() => active === key && loadChannel(c), 30000);
    }
    markRead(c);
    renderLists();
    renderMessages();
    renderTyping();
    $('text').focus();
}

function send(c, body) {
    if (c.kind === 'room') {
        client.publish(c.name, body).catch((err) => console.warn('publish', err.code));
        return;
    }
    const cid = newCid();
    // The message ends "typing" at the peer: the next keystroke says it again.
    typingSent.delete(c.name);
    put(c, { cid, from: me, to: c.name, body, ts: Date.now(), status: 'sending' });
    touch(c, Date.now());
    const sent = c.kind === 'peer' ? client.send(c.name, body, { cid }) : client.sendGroup(c.name, body, { cid });
    sent.then(
        (ack) => {
            rememberSeq(ack.id, ack.seq);
            put(c, { cid, id: ack.id, seq: ack.seq || undefined, gseq: ack.gseq, from: me, to: c.name, body, ts: ack.ts, status: 'sent' });
            if (c.kind === 'channel') loadChannel(c);
            // not delivered within 10 s: the peer is not online
            if (c.kind === 'peer')
                setTimeout(() => {
                    if (ack.seq > c.peerDelivered) setOnline(c.name, false);
                }, 10000);
        },
        (err) => put(c, { ...c.msgs.get(`cid:${cid}`), status: 'failed', error: err.code }),
    );
}

async function getToken() {
    const res = await fetch(`/dev/token?uid=${encodeURIComponent(me)}`, { cache: 'no-store' });
    if (!res.ok) throw new Error(`/dev/token answered HTTP ${res.status}`);
    const { token } = await res.json();
    return token;
}

function onMessage(m) {
    const c = chat(keyOf(m));
    if (m.from === me) rememberSeq(m.id, m.seq);
    put(c, { ...m });
    c.lastSeq = Math.max(c.lastSeq, m.seq);
    if (m.seq > c.counted) {
        c.counted = m.seq;
        if (m.from !== me && c.key !== active) c.unread++;
    }
    touch(c, m.ts);
    if (m.from === me) return;
    if (c.key === active) markRead(c);
    else queueDelivered(m.conv, m.seq);
    if (c.kind === 'peer') {
        stopTyping(c);
        if (Date.now() - m.ts < LIVE_MS) setOnline(c.name, true);
    }
}

let roomCounter = 0;

function start(uid) {
    me = uid;
    chats = new Map();
    seqCache = store.get(`zim.seqs.${me}`, {});
    for (const [peer, last] of store.get(`zim.contacts.${me}`, [])) chat(peer).last = last;
    online = new Map();
    announced = new Set();
    active = null;
    chat(`#${LOBBY}`);
    $('login').hidden = true;
    $('chat').hidden = false;
    $('logout').hidden = false;
    $('me').textContent = me;
    renderLists();
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
            const recent = [...chats.values()].filter((c) => c.kind === 'peer').sort((a, b) => b.last - a.last).slice(0, 20);
            for (const c of recent) announce(c.name);
            loadConvs();
            loadGroups();
            // Joined once; the SDK joins it again after every reconnect.
            if (!client.joinedRooms.includes(LOBBY)) joinLobby();
        }
    });
    client.on('error', (err) => {
        console.warn('zim', err.code, err.message);
        if (client.state !== 'authenticated') setStatus(client.state, err.message.replace(/^zim: /, ''));
    });
    client.on('message', onMessage);
    client.on('receipt', onReceipt);
    client.on('signal', onSignal);
    client.on('room', (m) => {
        const c = chat(`#${m.room}`);
        const n = ++roomCounter;
        put(c, { key: `r:${n}`, n, from: m.from, body: m.body, ts: m.ts, status: m.from === me ? 'sent' : '' });
        if (c.key !== active && m.from !== me) c.unread++;
        touch(c, m.ts);
    });
    // A channel's new message, live once its csync ran: the next one is
    // shown, a gap is read with csync.
    client.on('channel', (m) => {
        const c = chat(`g:${m.group}`);
        c.kind = 'channel';
        if (m.gseq !== c.gseq + 1) {
            loadChannel(c);
            return;
        }
        put(c, { ...m });
        c.gseq = m.gseq;
        if (c.key !== active && m.from !== me) c.unread++;
        touch(c, m.ts);
    });
    client.on('count', (x) => {
        const c = chat(`#${x.room}`);
        c.online = x.online;
        renderLists();
        if (c.key === active) renderTitle();
    });
    client.on('push', (p) => console.info('push from the backend', p.body));
    client.connect();
}

function joinLobby() {
    const lobby = chat(`#${LOBBY}`);
    client
        .join(LOBBY, { counts: true })
        .then(({ online: n }) => {
            lobby.online = n;
            renderLists();
            if (lobby.key === active) renderTitle();
        })
        .catch((err) => console.warn('join', err.code));
}

function sayBye() {
    if (client?.state === 'authenticated') for (const peer of announced) client.signal(peer, { zim: 'bye' });
}

async function stop() {
    sayBye();
    await new Promise((r) => setTimeout(r, 100)); // let the byes go out
    clearInterval(channelTimer);
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
    const c = chats.get(active);
    if (!t.trim() || !c) return;
    $('text').value = '';
    send(c, t);
});

$('text').addEventListener('input', typing);

$('logout').addEventListener('click', () => stop());

addEventListener('pagehide', sayBye);

const initial = params.get('uid') ?? sessionStorage.getItem('zim.uid');
if (initial) start(initial);
