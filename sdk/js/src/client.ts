/*  zim-client — ZimClient, a reconnecting client for the zim WebSocket
    protocol (docs/PROTOCOL.md).
    It authenticates (token in the URL or in an `auth` frame), keeps a queue
    of unacked sends that it retries with the same cid after a reconnect (the
    server is idempotent by cid), tracks the last inbox seq it has processed,
    syncs from it after every (re)connect and on a gap, deduplicates by seq,
    batches cursor acks, and keeps the connection alive with app-level pings.
    Frames queued in one tick go out as one WebSocket message. */

import { concat, decodeFramesLenient, encodeFrame, frames, type Frame } from './codec.js';
import { Emitter } from './emitter.js';
import { ErrorCode, RETRYABLE_SEND_CODES, TOKEN_REFUSED, ZimError } from './errors.js';
import {
    convError, toConversation, toGroup, toReceipt,
    type ChannelMessage, type ChannelPage, type ConvPage, type Group, type Receipt,
} from './convs.js';
import { isWsPackage, openTransport, resolveWebSocket, type Transport, type WebSocketCtor } from './transport.js';

/** Connection state. `disconnected` means a reconnect is scheduled; `closed`
    means stopped (not started yet, close() called, or a static token refused). */
export type State = 'connecting' | 'connected' | 'authenticated' | 'disconnected' | 'closed';

/** A message of the user's inbox (`msg` frame, or one entry of a sync page). */
export interface Message {
    /** The reader's inbox position: 1, 2, 3… per user, no gaps. */
    seq: number;
    /** Server message id (uint64, grows with time). */
    id: bigint;
    from: string;
    to: string;
    /** Conversation: `p:` + the two user ids sorted, joined by `:`; for a
        group's message `g:` + the group id. */
    conv: string;
    /** Any msgpack value, as the sender sent it. */
    body: unknown;
    /** Server time, ms since the Unix epoch. */
    ts: number;
    /** A group's message: the group id (`to` is the group id too). */
    group?: string;
    [key: string]: unknown;
}

/** A message of a history page: like Message, without `seq`. */
export type HistoryMessage = Omit<Message, 'seq'> & { seq?: number };

/** The server's acknowledgement of a send: the message is durable. */
export interface Ack {
    cid: string;
    id: bigint;
    /** The sender's inbox seq of this message (0 for a channel). */
    seq: number;
    ts: number;
    /** A group send's: its place in the group's log. */
    gseq?: number;
}

/** A history page, newest first. For the next (older) page pass the last
    message's id as `before`. */
export interface Page {
    msgs: HistoryMessage[];
    more: boolean;
}

/** Missing inbox positions, `from` to `to` inclusive. `lost` is false when
    the gap was just detected (a sync fills it), true when the server no
    longer has those messages (past retention) and they were skipped. */
export interface Gap {
    from: number;
    to: number;
    lost: boolean;
}

/** Who the connection is authenticated as (from `auth_ok`). */
export interface AuthInfo {
    app: string;
    uid: string;
    device: string;
}

/** Why the state changed, when there is something to say. */
export interface StateDetail {
    code?: number | string;
    reason?: string;
}

/** Where the last processed seq is kept between runs (e.g. localStorage). */
export interface SeqStorage {
    load(): number | null | undefined | Promise<number | null | undefined>;
    save(seq: number): void | Promise<void>;
}

export interface ZimClientOptions {
    /** A static token (JWT). With a static token, a refused token stops the client. */
    token?: string;
    /** Called for a token before connecting and again when one is refused. */
    getToken?: () => string | Promise<string>;
    /** Device name for the sync cursor (server default: `default`). */
    device?: string;
    /** `query`: token in the URL (403 at the upgrade when bad); `frame`: an
        `auth` frame after connecting; `auto` (default): `query` with the `ws`
        package, which reports the 403, `frame` with a WebSocket that cannot
        (browsers), so a bad token gets a clear error code. */
    auth?: 'auto' | 'query' | 'frame';
    /** ms to get from connecting to `auth_ok` (default 10000). */
    connectTimeout?: number;
    /** Reconnect backoff: first delay and cap in ms (defaults 500, 20000);
        the delay doubles per failed attempt and is jittered (50–100 %). */
    minReconnectDelay?: number;
    maxReconnectDelay?: number;
    /** ms between app-level pings (default 25000; 0: none) and ms to wait
        for any frame after a ping before reconnecting (default 10000). */
    pingInterval?: number;
    pongTimeout?: number;
    /** ms before send() rejects with code `timeout` (default 30000; 0: never).
        Retries across reconnects happen within this time. */
    sendTimeout?: number;
    /** ms after which a send written to a live connection without an ack
        is written again with the same cid (default 5000; 0: only after a
        reconnect). Covers a server node that died holding it (a broker of a
        cluster) while the connection stayed up; the server stores it once. */
    ackTimeout?: number;
    /** ms before sync()/history()/convs()/groups()/csync() and
        read()/delivered() reject with code `timeout` (default 15000); a
        connection lost meanwhile is waited out within this time. */
    requestTimeout?: number;
    /** Reads (sync, history, convs, groups, csync) in flight at a time on
        one connection; more wait their turn (the server's
        max_reads_inflight, default 4: one more would be refused 4028). */
    maxReadsInflight?: number;
    /** At most this many messages per sync page (default and max 1000). The
        server also bounds each page in bytes; `more` brings the rest. */
    syncLimit?: number;
    /** Sync from the last seq after every (re)connect and on a gap (default true). */
    autoSync?: boolean;
    /** Send `cursor` acks, at most every cursorInterval ms (default true, 500). */
    autoCursor?: boolean;
    cursorInterval?: number;
    /** The last seq already processed, if known (else `storage`, else the
        server's stored cursor for this device is used). */
    lastSeq?: number;
    /** Persists the last processed seq (saved at most every cursorInterval). */
    storage?: SeqStorage;
    /** Largest WebSocket message to send (the server's max_frame, default 65536). */
    maxMessageBytes?: number;
    /** WebSocket implementation (default: global WebSocket, else `ws`). */
    WebSocket?: WebSocketCtor;
}

/** A message published to a room the client is in (`from` is absent when
    the app's backend published it). */
export interface RoomMessage {
    room: string;
    body: unknown;
    ts: number;
    from?: string;
}

/** A push from the app's backend (docs/API.md). */
export interface Push {
    body: unknown;
    ts: number;
}

/** A live signal (typing...) from another user. */
export interface Signal {
    from: string;
    body: unknown;
}

/** A room's connections across the cluster changed (join with counts). */
export interface RoomCount {
    room: string;
    online: number;
}

export interface ZimClientEvents {
    state: [state: State, prev: State, detail: StateDetail];
    authenticated: [info: AuthInfo];
    message: [msg: Message];
    ack: [ack: Ack];
    error: [err: ZimError];
    gap: [gap: Gap];
    room: [msg: RoomMessage];
    /** A channel's message, live (docs/PROTOCOL.md, "Live channel
        messages"): after a csync of the channel, at most once. */
    channel: [msg: ChannelMessage];
    push: [push: Push];
    signal: [signal: Signal];
    count: [count: RoomCount];
    /** Cursors moved (docs/PROTOCOL.md, "Receipts"): this user's own (the
        answer to a read()/delivered(), or another device's), or the other
        side's of a 1:1 conversation in this user's seqs. */
    receipt: [receipt: Receipt];
    /** A room could not be joined again after a reconnect. */
    rejoinFailed: [room: string, err: ZimError];
}

interface PendingSend {
    cid: string;
    bytes: Uint8Array; //  the encoded send frame, reused by every retry
    promise: Promise<Ack>;
    resolve(ack: Ack): void;
    reject(err: ZimError): void;
    timer?: ReturnType<typeof setTimeout>; //  sendTimeout
    retryTimer?: ReturnType<typeof setTimeout>; //  retry after a retryable error
    ackTimer?: ReturnType<typeof setTimeout>; //  ackTimeout: write it again
    retries: number; //  retryable errors so far
    sentGen: number; //  connection generation it was last written on
}

interface PendingRequest {
    resolve(frame: Frame): void;
    reject(err: ZimError): void;
    timer: ReturnType<typeof setTimeout>;
    bytes: Uint8Array; //  the encoded request
    read: boolean; //  counts against maxReadsInflight
    sent: boolean; //  written (a read may wait its turn first)
}

//  A read or delivered mark waiting for its `receipt` (the answer carries
//  no rid: the oldest mark of the conversation takes it).
interface PendingMark {
    conv: string;
    bytes: Uint8Array;
    resolve(r: Receipt): void;
    reject(err: ZimError): void;
    timer: ReturnType<typeof setTimeout>;
    sentGen: number; //  connection generation it was last written on
}

interface Waiter {
    resolve(): void;
    reject(err: ZimError): void;
    timer?: ReturnType<typeof setTimeout>;
}

const MAX_ACKED_SEQS = 10000;

/** Server codes after which a read (history, convs, groups, csync) is
    asked again after a short backoff, within requestTimeout. */
const RETRYABLE_READ_CODES: ReadonlySet<number> = new Set([
    ErrorCode.TOO_MANY_READS,
    ...RETRYABLE_SEND_CODES,
]);

let cidCounter = 0;
const cidPrefix = (() => {
    const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
    if (c?.randomUUID) return c.randomUUID().replace(/-/g, '').slice(0, 12);
    return Math.random().toString(36).slice(2, 14);
})();

/** A fresh client message id: printable ASCII, unique per process run. */
export function newCid(): string {
    return `${cidPrefix}-${Date.now().toString(36)}-${(++cidCounter).toString(36)}`;
}

function toBigInt(v: unknown): bigint {
    if (typeof v === 'bigint') return v;
    if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
    if (typeof v === 'string' && /^\d+$/.test(v)) return BigInt(v);
    throw new TypeError(`zim: not an id: ${String(v)}`);
}

export class ZimClient extends Emitter<ZimClientEvents> {
    readonly url: string;
    private readonly o: Required<Omit<ZimClientOptions, 'token' | 'getToken' | 'device' | 'lastSeq' | 'storage' | 'WebSocket'>>
        & Pick<ZimClientOptions, 'token' | 'getToken' | 'device' | 'storage' | 'WebSocket'>;

    private _state: State = 'closed';
    private running = false; //  connect() called and not closed since
    private closedByUser = false; //  close() called: new sends reject
    private gen = 0; //  connection generation; stale socket events are ignored
    private t: Transport | null = null;
    private authed = false;
    private info: AuthInfo | null = null;
    private token: string | undefined;
    private tokenStale = false; //  fetch a fresh token before the next attempt
    private attempts = 0; //  failed attempts since the last auth_ok
    private reconnectTimer?: ReturnType<typeof setTimeout>;
    private connectTimer?: ReturnType<typeof setTimeout>;
    private pingTimer?: ReturnType<typeof setInterval>;
    private pongTimer?: ReturnType<typeof setTimeout>;
    private cursorTimer?: ReturnType<typeof setTimeout>;
    private gapTimer?: ReturnType<typeof setTimeout>;
    private pingCount = 0;

    private outq: Uint8Array[] = []; //  encoded frames for the next write
    private flushQueued = false;

    private readonly pending = new Map<string, PendingSend>(); //  unacked sends, in send order
    private readonly requests = new Map<number, PendingRequest>(); //  sync/history/rooms by rid
    private readQueue: number[] = []; //  rids of reads waiting for a turn
    private readsInflight = 0; //  reads written and not answered
    private readonly marks = new Map<string, PendingMark[]>(); //  read/delivered by conv, oldest first
    private markRetryTimer?: ReturnType<typeof setTimeout>; //  marks again after a busy error
    private background = false; //  state {background} to repeat on each connection
    private readonly rooms = new Map<string, { counts: boolean }>(); //  joined, rejoined on reconnect
    private nextRid = 1;
    private waiters: Waiter[] = []; //  waiting for authentication

    private _lastSeq: number | null; //  highest contiguous seq processed
    private readonly ackedSeqs = new Set<number>(); //  own sends' seqs above _lastSeq
    private highestSeen = 0; //  highest seq announced by a live msg or ack
    private cursorSent = 0; //  last cursor sent on this connection
    private savedSeq: number | null = null; //  last seq given to storage
    private syncing: Promise<void> | null = null;
    private syncEpoch = 0; //  bumped by sync(since): older pages are dropped
    private syncRetryTimer?: ReturnType<typeof setTimeout>; //  after a 5030
    private syncRetries = 0; //  retryable sync failures in a row
    private stableTimer?: ReturnType<typeof setTimeout>; //  resets the backoff
    private stopped: ZimError | null = null; //  why the client stopped for good
    private resyncWanted = false;
    private storageLoaded = false;

    constructor(url: string, options: ZimClientOptions = {}) {
        super();
        if (!options.token && !options.getToken)
            throw new TypeError('zim: ZimClient needs a token or a getToken function');
        this.url = url;
        this.o = {
            auth: 'auto',
            connectTimeout: 10000,
            minReconnectDelay: 500,
            maxReconnectDelay: 20000,
            pingInterval: 25000,
            pongTimeout: 10000,
            sendTimeout: 30000,
            ackTimeout: 5000,
            requestTimeout: 15000,
            maxReadsInflight: 4,
            syncLimit: 1000,
            autoSync: true,
            autoCursor: true,
            cursorInterval: 500,
            maxMessageBytes: 65536,
            ...options,
        } as ZimClient['o'];
        this.token = options.token;
        this._lastSeq = options.lastSeq ?? null;
        if (options.lastSeq !== undefined) this.storageLoaded = true;
    }

    /** Current connection state. */
    get state(): State {
        return this._state;
    }

    /** Who the connection is authenticated as (the last auth_ok), or null. */
    get user(): AuthInfo | null {
        return this.info;
    }

    /** The highest inbox seq processed without a gap, or null when unknown. */
    get lastSeq(): number | null {
        return this._lastSeq;
    }

    /** Number of sends waiting for their ack. */
    get pendingSends(): number {
        return this.pending.size;
    }

    /** Starts connecting (and reconnecting until close()). Resolves once
        authenticated; rejects only if the client stops first (close(), or a
        static token refused). */
    connect(): Promise<void> {
        if (!this.running) {
            this.closedByUser = false;
            this.stopped = null;
        }
        const ready = this.whenAuthenticated(0);
        ready.catch(() => {}); //  the caller may not await it
        if (this.running) return ready;
        this.running = true;
        this.attempts = 0;
        const gen = this.gen;
        void (async () => {
            if (this.o.storage && !this.storageLoaded) {
                try {
                    const v = await this.o.storage.load();
                    if (typeof v === 'number' && Number.isFinite(v) && v >= 0) this._lastSeq = v;
                    this.savedSeq = this._lastSeq;
                } catch (err) {
                    this.emit('error', new ZimError('protocol', `zim: storage.load failed: ${String(err)}`));
                }
                this.storageLoaded = true;
            }
            if (this.running && gen === this.gen) await this.attempt();
        })();
        return ready;
    }

    /** Stops for good: sends a last cursor, closes the socket, rejects
        unacked sends and pending requests with code `closed`, saves the last
        seq. Resolves when the socket has closed (at most ~1 s). */
    async close(): Promise<void> {
        this.closedByUser = true;
        this.flushCursor(true);
        const t = this.t;
        this.stop(new ZimError('closed', 'zim: client closed'));
        let timer: ReturnType<typeof setTimeout> | undefined;
        const capped = t
            ? Promise.race([t.closed, new Promise<void>((resolve) => { timer = setTimeout(resolve, 1000); })])
            : Promise.resolve();
        await Promise.all([capped, this.saveSeq()]);
        clearTimeout(timer);
    }

    /** Sends body to user `to`. Resolves with the ack once the server has
        stored the message; rejects with a ZimError carrying the server code
        (e.g. 4004 bad recipient) or `timeout`/`closed`. Unacked sends are
        retried with the same cid after a reconnect and after retryable errors
        (4029, 5000, 5030, 5040). Sending again with the cid of a send still
        pending returns that send's promise. */
    send(to: string, body: unknown, options: { cid?: string } = {}): Promise<Ack> {
        return this.sendFrame((cid, b) => frames.send(to, cid, b), body, options);
    }

    /** Sends body to group (or channel) `group` (docs/PROTOCOL.md, "Groups
        and channels"): as send(), and the ack carries `gseq`. A group's
        messages arrive as 'message' events with `group` set, `to` the group
        id and `conv` "g:GROUP", with the member's own seq. Refused with
        4040 (not a member) or 4041 (no such group). */
    sendGroup(group: string, body: unknown, options: { cid?: string } = {}): Promise<Ack> {
        return this.sendFrame((cid, b) => frames.sendGroup(group, cid, b), body, options);
    }

    private sendFrame(make: (cid: string, body: unknown) => Record<string, unknown>, body: unknown,
                      options: { cid?: string }): Promise<Ack> {
        const cid = options.cid ?? newCid();
        const existing = this.pending.get(cid);
        if (existing) return existing.promise;
        if (this.closedByUser)
            return Promise.reject(new ZimError('closed', 'zim: client closed', { cid }));
        if (this.stopped) //  e.g. a static token refused: nothing will send it
            return Promise.reject(new ZimError(this.stopped.code, this.stopped.message, { cid, status: this.stopped.status }));
        let bytes: Uint8Array;
        try {
            bytes = encodeFrame(make(cid, body === undefined ? null : body));
        } catch (err) {
            return Promise.reject(new ZimError(ErrorCode.BAD_FIELD, `zim: cannot encode body: ${String(err)}`, { cid }));
        }
        if (bytes.length > this.o.maxMessageBytes)
            return Promise.reject(new ZimError(ErrorCode.TOO_LARGE,
                `zim: message of ${bytes.length} bytes is over ${this.o.maxMessageBytes}`, { cid }));
        let resolve!: (ack: Ack) => void;
        let reject!: (err: ZimError) => void;
        const promise = new Promise<Ack>((res, rej) => {
            resolve = res;
            reject = rej;
        });
        const p: PendingSend = { cid, bytes, promise, resolve, reject, retries: 0, sentGen: -1 };
        if (this.o.sendTimeout > 0) {
            p.timer = setTimeout(() => {
                this.dropSend(p);
                p.reject(new ZimError('timeout', `zim: no ack for ${cid} within ${this.o.sendTimeout} ms`, { cid }));
            }, this.o.sendTimeout);
        }
        this.pending.set(cid, p);
        if (this.authed) this.transmit(p);
        return promise;
    }

    /** Fetches a page of the conversation with `peer`, newest first: messages
        older than `before` (an id; default: from the newest), at most `limit`
        (the server may return fewer: it bounds pages in bytes; `more` says
        whether older ones remain). A connection lost before the answer is
        waited out and the same page asked again, within requestTimeout. */
    async history(peer: string, options: { before?: bigint | number | string; limit?: number } = {}): Promise<Page> {
        const before = options.before === undefined ? undefined : toBigInt(options.before);
        const limit = options.limit ?? 50;
        const page = await this.untilAnswered((ms) => this.request((rid) => frames.history(peer, before, limit, rid), ms, true), true);
        const msgs = Array.isArray(page.msgs) ? page.msgs.map((m) => this.normMsg(m as Record<string, unknown>)) : [];
        return { msgs: msgs as HistoryMessage[], more: page.more === true };
    }

    /** Syncs now, from `since` if given (messages after it are delivered
        again as `message` events) else from the last processed seq, until
        the server has no more, across reconnects (from the last seq
        processed), within requestTimeout. Resolves with the last processed seq. */
    async sync(since?: number): Promise<number | null> {
        if (since !== undefined) {
            //  A sync already running asked from the old position: let it
            //  finish, then rewind (else its pages would land above since).
            if (this.syncing) await this.syncing.catch(() => {});
            this.syncEpoch++;
            this._lastSeq = since;
            this.ackedSeqs.clear();
            this.highestSeen = since;
        }
        await this.untilAnswered(async () => {
            this.resyncWanted = true;
            const run = this.startSync();
            if (run) await run;
        });
        return this._lastSeq;
    }

    //  Runs attempt once authenticated, with the time left of requestTimeout;
    //  a connection lost meanwhile ('disconnected') is waited out and the
    //  attempt made again, until it succeeds, fails otherwise, or time is up.
    //  With retryBusy, a server answer with a code of RETRYABLE_READ_CODES
    //  (4028, 4029, 5000, 5030, 5040) is asked again after a short backoff.
    private async untilAnswered<T>(attempt: (ms: number) => Promise<T>, retryBusy = false): Promise<T> {
        const deadline = Date.now() + this.o.requestTimeout;
        let busy = 0;
        for (;;) {
            const left = deadline - Date.now();
            if (left <= 0) throw new ZimError('timeout', `zim: no answer within ${this.o.requestTimeout} ms`);
            await this.whenAuthenticated(left);
            try {
                return await attempt(Math.max(1, deadline - Date.now()));
            } catch (err) {
                if (!(err instanceof ZimError) || !this.running) throw err;
                if (retryBusy && typeof err.code === 'number' && RETRYABLE_READ_CODES.has(err.code)) {
                    const base = Math.min(2000, 100 * 2 ** Math.min(busy++, 5));
                    const wait = Math.min(base / 2 + (Math.random() * base) / 2, deadline - Date.now());
                    if (wait <= 0) throw err;
                    await new Promise((r) => setTimeout(r, wait));
                    continue;
                }
                if (err.code !== 'disconnected') throw err;
            }
        }
    }

    // ----------------------------------------------------------------------
    //  Connection life cycle

    private setState(state: State, detail: StateDetail = {}): void {
        if (state === this._state) return;
        const prev = this._state;
        this._state = state;
        this.emit('state', state, prev, detail);
    }

    //  Resolves when authenticated; timeoutMs 0 waits without limit.
    private whenAuthenticated(timeoutMs: number): Promise<void> {
        if (this.authed) return Promise.resolve();
        if (this.closedByUser) return Promise.reject(new ZimError('closed', 'zim: client closed'));
        return new Promise<void>((resolve, reject) => {
            const w: Waiter = { resolve, reject };
            if (timeoutMs > 0) {
                w.timer = setTimeout(() => {
                    this.waiters = this.waiters.filter((x) => x !== w);
                    reject(new ZimError('timeout', `zim: not connected within ${timeoutMs} ms`));
                }, timeoutMs);
            }
            this.waiters.push(w);
        });
    }

    private async currentToken(): Promise<string> {
        if (this.o.getToken && (this.tokenStale || this.token === undefined)) {
            this.token = await this.o.getToken();
            this.tokenStale = false;
        }
        if (!this.token) throw new Error('empty token');
        return this.token;
    }

    private async attempt(): Promise<void> {
        const gen = ++this.gen;
        this.setState('connecting');
        let token: string;
        let Ctor: WebSocketCtor;
        try {
            token = await this.currentToken();
        } catch (err) {
            if (gen !== this.gen) return;
            this.emit('error', new ZimError('token', `zim: getToken failed: ${String(err)}`));
            this.reconnectLater({ code: 'token' });
            return;
        }
        if (gen !== this.gen) return;
        try {
            Ctor = await resolveWebSocket(this.o.WebSocket);
        } catch (err) {
            if (gen !== this.gen) return;
            const e = err instanceof ZimError ? err : new ZimError('transport', String(err));
            this.emit('error', e);
            this.stop(e);
            return;
        }
        if (gen !== this.gen) return;
        const viaQuery = this.o.auth === 'query' || (this.o.auth === 'auto' && isWsPackage(Ctor));
        let url: string;
        try {
            const u = new URL(this.url);
            if (viaQuery) u.searchParams.set('token', token);
            if (viaQuery && this.o.device) u.searchParams.set('device', this.o.device);
            url = u.toString();
        } catch {
            const e = new ZimError('transport', `zim: bad URL ${this.url}`);
            this.emit('error', e);
            this.stop(e);
            return;
        }
        let opened = false;
        let t: Transport;
        try {
            t = openTransport(Ctor, url, {
                open: () => {
                    if (gen !== this.gen) return;
                    opened = true;
                    this.setState('connected');
                    if (!viaQuery) this.writeNow(frames.auth(token, this.o.device));
                },
                message: (data) => {
                    if (gen === this.gen) this.onData(data);
                },
                text: () => {},
                close: (code, reason, status) => {
                    if (gen !== this.gen) return;
                    this.onTransportClosed(code, reason, status, opened, viaQuery, t);
                },
            });
        } catch (err) {
            const e = new ZimError('transport', `zim: cannot open ${this.url}: ${String(err)}`);
            this.emit('error', e);
            this.stop(e);
            return;
        }
        this.t = t;
        this.connectTimer = setTimeout(() => {
            if (gen !== this.gen || this.authed) return;
            this.dropConnection({ code: 'timeout', reason: `not authenticated within ${this.o.connectTimeout} ms` });
        }, this.o.connectTimeout);
    }

    private onTransportClosed(code: number, reason: string, status: number | undefined,
                              opened: boolean, viaQuery: boolean, t: Transport): void {
        this.teardown();
        if (status === 401 || status === 403) {
            this.authFailed(new ZimError(ErrorCode.BAD_TOKEN,
                `zim: token refused at the WebSocket upgrade (HTTP ${status})`, { status }));
            return;
        }
        //  A WebSocket that hides HTTP statuses cannot tell a refused token
        //  from a network failure: get a fresh token to be safe.
        if (!opened && viaQuery && !t.reportsHttpStatus && this.o.getToken) this.tokenStale = true;
        this.reconnectLater({ code: status ?? code, reason: reason || (status ? `HTTP ${status}` : '') });
    }

    private authFailed(err: ZimError): void {
        this.emit('error', err);
        if (this.o.getToken) {
            this.tokenStale = true;
            this.reconnectLater({ code: err.code, reason: err.message });
        } else {
            this.stop(err);
        }
    }

    //  Closes the current socket (if any) and schedules a reconnect.
    private dropConnection(detail: StateDetail): void {
        const t = this.t;
        this.teardown();
        t?.close(4000, String(detail.reason ?? '').slice(0, 100));
        this.reconnectLater(detail);
    }

    //  Forgets the current connection: timers, requests, queued frames.
    private teardown(): void {
        this.gen++;
        this.t = null;
        this.authed = false;
        this.outq = [];
        clearTimeout(this.connectTimer);
        clearInterval(this.pingTimer);
        clearTimeout(this.pongTimer);
        clearTimeout(this.gapTimer);
        clearTimeout(this.syncRetryTimer);
        clearTimeout(this.stableTimer);
        this.pingTimer = this.pongTimer = this.connectTimer = this.gapTimer = undefined;
        this.syncRetryTimer = this.stableTimer = undefined;
        for (const p of this.pending.values()) {
            clearTimeout(p.retryTimer);
            clearTimeout(p.ackTimer);
            p.retryTimer = p.ackTimer = undefined;
        }
        const err = new ZimError('disconnected', 'zim: connection lost');
        for (const [rid, r] of this.requests) {
            clearTimeout(r.timer);
            r.reject(new ZimError('disconnected', err.message, { rid }));
        }
        this.requests.clear();
        this.readQueue = [];
        this.readsInflight = 0;
        clearTimeout(this.markRetryTimer);
        this.markRetryTimer = undefined;
    }

    private reconnectLater(detail: StateDetail): void {
        if (!this.running) return;
        this.setState('disconnected', detail);
        const base = Math.min(this.o.maxReconnectDelay, this.o.minReconnectDelay * 2 ** Math.min(this.attempts, 30));
        this.attempts++;
        const delay = base / 2 + (Math.random() * base) / 2;
        clearTimeout(this.reconnectTimer);
        this.reconnectTimer = setTimeout(() => {
            this.reconnectTimer = undefined;
            if (this.running) void this.attempt();
        }, delay);
    }

    //  Stops for good, failing everything that waits with err.
    private stop(err: ZimError): void {
        const t = this.t;
        this.running = false;
        this.stopped = err;
        this.teardown();
        t?.close(1000, 'bye');
        clearTimeout(this.reconnectTimer);
        clearTimeout(this.cursorTimer);
        this.reconnectTimer = this.cursorTimer = undefined;
        for (const p of this.pending.values()) {
            clearTimeout(p.timer);
            p.reject(new ZimError(err.code, err.message, { cid: p.cid, status: err.status }));
        }
        this.pending.clear();
        for (const list of this.marks.values())
            for (const m of list) {
                clearTimeout(m.timer);
                m.reject(new ZimError(err.code, err.message, { status: err.status }));
            }
        this.marks.clear();
        for (const w of this.waiters) {
            clearTimeout(w.timer);
            w.reject(err);
        }
        this.waiters = [];
        this.syncing = null;
        this.setState('closed', { code: err.code, reason: err.message });
    }

    // ----------------------------------------------------------------------
    //  Writing

    //  Queues an encoded frame; frames queued in one tick share one message.
    private enqueue(bytes: Uint8Array): void {
        this.outq.push(bytes);
        if (!this.flushQueued) {
            this.flushQueued = true;
            queueMicrotask(() => this.flush());
        }
    }

    private writeNow(frame: Record<string, unknown>): void {
        this.enqueue(encodeFrame(frame));
        this.flush();
    }

    //  Writes queued frames, as few messages as maxMessageBytes allows.
    private flush(): void {
        this.flushQueued = false;
        const q = this.outq;
        this.outq = [];
        if (!this.t || q.length === 0) return;
        let batch: Uint8Array[] = [];
        let size = 0;
        for (const b of q) {
            if (size + b.length > this.o.maxMessageBytes && batch.length) {
                this.t.send(concat(batch));
                batch = [];
                size = 0;
            }
            batch.push(b);
            size += b.length;
        }
        if (batch.length) this.t.send(concat(batch));
    }

    private transmit(p: PendingSend): void {
        p.sentGen = this.gen;
        this.enqueue(p.bytes);
        clearTimeout(p.ackTimer);
        p.ackTimer = undefined;
        if (this.o.ackTimeout > 0) {
            p.ackTimer = setTimeout(() => {
                p.ackTimer = undefined;
                if (this.authed && p.sentGen === this.gen && !p.retryTimer && this.pending.get(p.cid) === p)
                    this.transmit(p);
            }, this.o.ackTimeout);
        }
    }

    private dropSend(p: PendingSend): void {
        clearTimeout(p.timer);
        clearTimeout(p.retryTimer);
        clearTimeout(p.ackTimer);
        this.pending.delete(p.cid);
    }

    //  A request answered by a frame with its rid. A read (sync, history,
    //  convs, groups, csync) waits its turn while maxReadsInflight are
    //  unanswered, so the server never has to refuse one with 4028.
    private request(build: (rid: number) => Record<string, unknown>, timeoutMs = this.o.requestTimeout,
                    read = false): Promise<Frame> {
        if (!this.authed) return Promise.reject(new ZimError('disconnected', 'zim: not connected'));
        const rid = this.nextRid++;
        const bytes = encodeFrame(build(rid));
        return new Promise<Frame>((resolve, reject) => {
            const timer = setTimeout(() => {
                if (this.finishRequest(rid))
                    reject(new ZimError('timeout', `zim: no answer within ${this.o.requestTimeout} ms`, { rid }));
            }, timeoutMs);
            const r: PendingRequest = { resolve, reject, timer, bytes, read, sent: false };
            this.requests.set(rid, r);
            if (read && this.readsInflight >= Math.max(1, this.o.maxReadsInflight)) this.readQueue.push(rid);
            else this.sendRequest(r);
        });
    }

    private sendRequest(r: PendingRequest): void {
        r.sent = true;
        if (r.read) this.readsInflight++;
        this.enqueue(r.bytes);
    }

    //  Forgets request rid (answered, refused or timed out) and lets the
    //  next waiting read go; returns it, or undefined if it was not pending.
    private finishRequest(rid: number): PendingRequest | undefined {
        const r = this.requests.get(rid);
        if (!r) return undefined;
        clearTimeout(r.timer);
        this.requests.delete(rid);
        if (!r.read) return r;
        if (!r.sent) {
            this.readQueue = this.readQueue.filter((x) => x !== rid);
            return r;
        }
        this.readsInflight--;
        while (this.readQueue.length && this.readsInflight < Math.max(1, this.o.maxReadsInflight)) {
            const next = this.requests.get(this.readQueue.shift() as number);
            if (next) this.sendRequest(next);
        }
        return r;
    }

    // ----------------------------------------------------------------------
    //  Reading

    private onData(data: Uint8Array): void {
        clearTimeout(this.pongTimer);
        this.pongTimer = undefined;
        const { frames: list, error } = decodeFramesLenient(data);
        const gen = this.gen;
        for (const f of list) {
            if (gen !== this.gen) return; //  a handler dropped the connection
            this.onFrame(f);
        }
        if (error) this.emit('error', new ZimError('protocol', `zim: undecodable server message: ${error.message}`));
    }

    private onFrame(f: Frame): void {
        switch (f.op) {
            case 'joined':
            case 'left':
            case 'published':
            case 'page':
            case 'convs':
            case 'groups': {
                const r = typeof f.rid === 'number' ? this.finishRequest(f.rid) : undefined;
                if (r) r.resolve(f);
                break;
            }
            case 'receipt':
                this.onReceipt(f);
                break;
            case 'room': {
                //  A channel's live room "g:GROUP": its body is the message
                //  as a csync page entry has it.
                if (typeof f.room === 'string' && f.room.startsWith('g:') && f.body && typeof f.body === 'object') {
                    this.emit('channel', this.normMsg(f.body as Record<string, unknown>) as ChannelMessage);
                    break;
                }
                const m: RoomMessage = { room: String(f.room ?? ''), body: f.body, ts: Number(f.ts) };
                if (typeof f.from === 'string') m.from = f.from;
                this.emit('room', m);
                break;
            }
            case 'push':
                this.emit('push', { body: f.body, ts: Number(f.ts) });
                break;
            case 'signal':
                this.emit('signal', { from: String(f.from ?? ''), body: f.body });
                break;
            case 'count':
                this.emit('count', { room: String(f.room ?? ''), online: Number(f.online) });
                break;
            case 'auth_ok':
                this.onAuthOk(f);
                break;
            case 'ack':
                this.onAck(f);
                break;
            case 'msg':
                this.processMsg(f, false);
                break;
            case 'error':
                this.onServerError(f);
                break;
            default:
                break; //  pong, and ops of newer servers
        }
    }

    private onAuthOk(f: Frame): void {
        if (this.authed) return;
        clearTimeout(this.connectTimer);
        this.connectTimer = undefined;
        this.authed = true;
        //  The backoff starts over once this connection has lasted a while:
        //  one that is closed right after auth must not reconnect in a loop.
        clearTimeout(this.stableTimer);
        this.stableTimer = setTimeout(() => {
            this.stableTimer = undefined;
            this.attempts = 0;
        }, this.o.maxReconnectDelay);
        this.cursorSent = 0;
        this.info = { app: String(f.app ?? ''), uid: String(f.uid ?? ''), device: String(f.device ?? '') };
        //  Unacked sends first, in their original order, with their cids.
        for (const p of this.pending.values()) if (p.sentGen !== this.gen && !p.retryTimer) this.transmit(p);
        //  Then marks not answered on the last connection, and the app's
        //  background state (a new connection starts in the foreground).
        for (const list of [...this.marks.values()])
            for (const m of [...list]) {
                //  made before the first auth_ok: checked now
                const err = convError(m.conv, this.info.uid);
                if (err) {
                    this.dropMark(m);
                    m.reject(err);
                } else if (m.sentGen !== this.gen) this.writeMark(m);
            }
        if (this.background) this.enqueue(encodeFrame(frames.state(true)));
        if (this.o.pingInterval > 0) {
            this.pingTimer = setInterval(() => this.ping(), this.o.pingInterval);
        }
        this.setState('authenticated');
        this.emit('authenticated', this.info);
        const waiters = this.waiters;
        this.waiters = [];
        for (const w of waiters) {
            clearTimeout(w.timer);
            w.resolve();
        }
        if (this.o.autoSync && this.authed) this.autoSync();
        if (this._lastSeq !== null) this.scheduleCursor();
        this.rejoin();
    }

    //  After a reconnect: every room joined before is joined again.
    private rejoin(): void {
        for (const [room, { counts }] of this.rooms) {
            this.request((rid) => frames.join(room, rid, counts)).catch((err: ZimError) => {
                if (typeof err.code === 'number') {
                    this.rooms.delete(room); //  refused now: the app's policy changed
                    this.emit('rejoinFailed', room, err);
                }
            });
        }
    }

    // ----------------------------------------------------------------------
    //  Rooms and signals (docs/PROTOCOL.md, "Rooms and live signals")

    /** Joins a room (1–128 bytes of `A-Z a-z 0-9 _ . : @ / -`); with
        `counts`, `count` events follow its online count. Resolves with the
        room's online connections. The client joins it again after every
        reconnect until leave(). */
    async join(room: string, options: { counts?: boolean } = {}): Promise<{ room: string; online: number }> {
        await this.whenAuthenticated(this.o.requestTimeout);
        const f = await this.request((rid) => frames.join(room, rid, options.counts));
        this.rooms.set(room, { counts: !!options.counts });
        return { room: String(f.room), online: Number(f.online) };
    }

    /** Leaves a room (and stops joining it on reconnect). */
    async leave(room: string): Promise<void> {
        this.rooms.delete(room);
        await this.whenAuthenticated(this.o.requestTimeout);
        await this.request((rid) => frames.leave(room, rid));
    }

    /** Publishes body (any msgpack-able value) to every connection in a
        room this client is in, itself included. Live only: not stored. */
    async publish(room: string, body: unknown): Promise<void> {
        await this.whenAuthenticated(this.o.requestTimeout);
        await this.request((rid) => frames.publish(room, body, rid));
    }

    /** Sends a live signal (typing...) to every connection of user `to`.
        Not stored, not acknowledged; false if not connected. */
    signal(to: string, body: unknown): boolean {
        if (!this.authed) return false;
        this.enqueue(encodeFrame(frames.signal(to, body)));
        return true;
    }

    /** The rooms this client is in (joined again after a reconnect). */
    get joinedRooms(): string[] {
        return [...this.rooms.keys()];
    }

    // ----------------------------------------------------------------------
    //  Receipts, the conversation list, groups and channels
    //  (docs/PROTOCOL.md, "Receipts and the conversation list", "Groups and
    //  channels")

    /** Marks `conv` read up to `seq`, a seq of this user's inbox (e.g. the
        last message on screen; the server moves the cursor to the newest
        message of the other side at or below it, and only forward). The
        other side of a 1:1 conversation gets a `receipt` in its own seqs,
        this user's other devices one with the cursors. Resolves with this
        user's cursors in `conv` as the server answered (a `receipt` also
        comes as an event). Rejects at once with 4001 (not a conversation
        key) or 4030 (not this user's); written again after a reconnect
        or a busy answer (4029, 5030...), within requestTimeout. */
    read(conv: string, seq: number): Promise<Receipt> {
        return this.mark(conv, frames.read(conv, seq));
    }

    /** Marks `conv` delivered (arrived on a device) up to `seq`: as read(). */
    delivered(conv: string, seq: number): Promise<Receipt> {
        return this.mark(conv, frames.delivered(conv, seq));
    }

    /** Mutes pushes of `conv` until `until` (ms since the epoch; omitted:
        for ever; 0: unmute). No answer (`muted` shows in convs()); false if
        not connected. Throws a ZimError 4001/4030 for a key that is not a
        conversation of this user. */
    mute(conv: string, until?: number): boolean {
        const err = this.info ? convError(conv, this.info.uid) : null;
        if (err) throw err;
        if (!this.authed) return false;
        this.enqueue(encodeFrame(frames.mute(conv, until)));
        return true;
    }

    /** Tells the server the app went to the background (true) or came
        back (false): in the background this user's messages are pushed as
        well as delivered. Kept and said again after a reconnect. */
    setBackground(background: boolean): void {
        if (background === this.background) return;
        this.background = background;
        if (this.authed) this.enqueue(encodeFrame(frames.state(background)));
    }

    /** A page of the conversation list, most recent first: each entry's
        last message, unread count and cursors (Conversation). For the
        next page pass the last entry's `id` as `before` while `more`. */
    async convs(options: { limit?: number; before?: bigint | number | string } = {}): Promise<ConvPage> {
        const before = options.before === undefined ? undefined : toBigInt(options.before);
        const limit = options.limit ?? 20;
        const f = await this.untilAnswered((ms) => this.request((rid) => frames.convs(limit, before, rid), ms, true), true);
        const me = this.info?.uid ?? '';
        const list = Array.isArray(f.convs) ? (f.convs as Record<string, unknown>[]) : [];
        return { convs: list.map((e) => toConversation(e, me, toBigInt)), more: f.more === true };
    }

    /** This user's groups and channels, with each one's head (`gseq`),
        where the member's reading starts (`joined`) and member count. */
    async groups(): Promise<Group[]> {
        const f = await this.untilAnswered((ms) => this.request((rid) => frames.groups(rid), ms, true), true);
        const list = Array.isArray(f.groups) ? (f.groups as Record<string, unknown>[]) : [];
        return list.map(toGroup);
    }

    /** Reads channel `group`'s log after gseq `from` (default 0: from
        where this member's reading starts), oldest first, at most `limit`
        (default 100, max 1000). `reset` is true when `from` was too far
        behind: the page holds the newest messages instead. Rejects with
        4040 (not a member), 4041 (no such group). A group's log reads the
        same way (its messages also come into the inbox). After a csync of
        a channel its new messages come live as `channel` events (at most
        once: a gseq above last+1 means csync from last). */
    async csync(group: string, options: { from?: number; limit?: number } = {}): Promise<ChannelPage> {
        const since = options.from ?? 0;
        const limit = options.limit ?? 100;
        const f = await this.untilAnswered((ms) => this.request((rid) => frames.csync(group, since, limit, rid), ms, true), true);
        const list = Array.isArray(f.msgs) ? (f.msgs as Record<string, unknown>[]) : [];
        return {
            msgs: list.map((m) => this.normMsg(m) as ChannelMessage),
            more: f.more === true,
            reset: f.reset === true,
        };
    }

    private mark(conv: string, frame: Record<string, unknown>): Promise<Receipt> {
        if (this.closedByUser) return Promise.reject(new ZimError('closed', 'zim: client closed'));
        if (this.stopped) return Promise.reject(new ZimError(this.stopped.code, this.stopped.message));
        const err = this.info ? convError(conv, this.info.uid) : null;
        if (err) return Promise.reject(err);
        const seq = frame.seq;
        if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0)
            return Promise.reject(new ZimError(ErrorCode.BAD_FIELD, `zim: seq must be a seq (an integer >= 0): ${String(seq)}`));
        return new Promise<Receipt>((resolve, reject) => {
            const m: PendingMark = {
                conv,
                bytes: encodeFrame(frame),
                resolve,
                reject,
                sentGen: -1,
                timer: setTimeout(() => {
                    this.dropMark(m);
                    reject(new ZimError('timeout', `zim: no receipt for ${conv} within ${this.o.requestTimeout} ms`));
                }, this.o.requestTimeout),
            };
            const list = this.marks.get(conv);
            if (list) list.push(m);
            else this.marks.set(conv, [m]);
            if (this.authed) this.writeMark(m);
        });
    }

    private writeMark(m: PendingMark): void {
        m.sentGen = this.gen;
        this.enqueue(m.bytes);
    }

    private dropMark(m: PendingMark): void {
        clearTimeout(m.timer);
        const list = this.marks.get(m.conv);
        if (!list) return;
        const i = list.indexOf(m);
        if (i >= 0) list.splice(i, 1);
        if (!list.length) this.marks.delete(m.conv);
    }

    //  Every mark waiting is written again after a jittered 200-400 ms.
    private retryMarksLater(): void {
        if (this.markRetryTimer) return;
        this.markRetryTimer = setTimeout(() => {
            this.markRetryTimer = undefined;
            if (this.authed) for (const list of this.marks.values()) for (const m of list) this.writeMark(m);
        }, 200 + Math.random() * 200);
    }

    private onReceipt(f: Frame): void {
        const r = toReceipt(f);
        //  This user's cursors: the answer to the oldest mark of the
        //  conversation (or another device's move, which says as much).
        if (this.info && r.user === this.info.uid) {
            const list = this.marks.get(r.conv);
            const m = list?.[0];
            if (m) {
                this.dropMark(m);
                m.resolve(r);
            }
        }
        this.emit('receipt', r);
    }

    private ping(): void {
        if (!this.authed) return;
        this.enqueue(encodeFrame(frames.ping(++this.pingCount)));
        if (!this.pongTimer) {
            this.pongTimer = setTimeout(() => {
                this.pongTimer = undefined;
                this.dropConnection({ code: 'timeout', reason: `no answer to ping within ${this.o.pongTimeout} ms` });
            }, this.o.pongTimeout);
        }
    }

    private onAck(f: Frame): void {
        const cid = typeof f.cid === 'string' ? f.cid : '';
        let ack: Ack;
        try {
            ack = { cid, id: toBigInt(f.id), seq: Number(f.seq), ts: Number(f.ts) };
            if (f.gseq !== undefined) ack.gseq = Number(f.gseq);
        } catch {
            this.emit('error', new ZimError('protocol', 'zim: ack without a valid id'));
            return;
        }
        if (Number.isInteger(ack.seq)) this.noteOwnSeq(ack.seq);
        const p = this.pending.get(cid);
        if (!p) return; //  a late duplicate, or a send that timed out
        this.dropSend(p);
        p.resolve(ack);
        this.emit('ack', ack);
    }

    private onServerError(f: Frame): void {
        const code = typeof f.code === 'number' ? f.code : ErrorCode.INTERNAL;
        const text = typeof f.text === 'string' ? f.text : `error ${code}`;
        if (typeof f.cid === 'string') {
            const p = this.pending.get(f.cid);
            if (!p) return;
            if (RETRYABLE_SEND_CODES.has(code)) {
                const delay = Math.min(5000, 200 * 2 ** p.retries++) * (0.5 + Math.random() / 2);
                clearTimeout(p.retryTimer);
                clearTimeout(p.ackTimer);
                p.ackTimer = undefined;
                p.retryTimer = setTimeout(() => {
                    p.retryTimer = undefined;
                    if (this.authed && this.pending.get(p.cid) === p) this.transmit(p);
                }, delay);
                return;
            }
            this.dropSend(p);
            p.reject(new ZimError(code, text, { cid: f.cid }));
            return;
        }
        if (typeof f.rid === 'number') {
            const r = this.finishRequest(f.rid);
            if (r) {
                r.reject(new ZimError(code, text, { rid: f.rid }));
                return;
            }
        }
        if (this.authed && this.marks.size && RETRYABLE_SEND_CODES.has(code)) {
            //  An error without cid or rid while marks wait: most likely a
            //  mark refused for the moment (4029, 5030...). Marks only move
            //  cursors forward, so all of them are written again shortly.
            this.retryMarksLater();
            return;
        }
        const err = new ZimError(code, text);
        if (!this.authed && TOKEN_REFUSED.has(code)) {
            const t = this.t;
            this.teardown();
            t?.close(1000, 'bad token');
            this.authFailed(err);
            return;
        }
        this.emit('error', err);
    }

    // ----------------------------------------------------------------------
    //  Inbox order, gaps and sync

    private normMsg(m: Record<string, unknown>): Record<string, unknown> {
        const { op: _op, ...rest } = m;
        if (rest.id !== undefined) rest.id = toBigInt(rest.id);
        return rest;
    }

    //  The seq of one of our own sends (from its ack): the sending device
    //  gets no `msg` for it, so it counts as processed once contiguous.
    private noteOwnSeq(seq: number): void {
        if (this._lastSeq !== null && seq <= this._lastSeq) return;
        if (this.ackedSeqs.size < MAX_ACKED_SEQS) this.ackedSeqs.add(seq);
        if (this._lastSeq === null) {
            //  No baseline yet: a sync from the server's cursor sets it.
            this.highestSeen = Math.max(this.highestSeen, seq);
            if (this.o.autoSync) this.autoSync();
            return;
        }
        this.advance();
        if (seq > this._lastSeq) {
            //  Something before it is still on its way; sync if it is not
            //  there shortly.
            this.highestSeen = Math.max(this.highestSeen, seq);
            this.syncLater();
        }
    }

    //  One sync in a second (the gap timer), while a seq is announced
    //  that the last sync did not find.
    private syncLater(): void {
        if (this.gapTimer || !this.o.autoSync) return;
        this.gapTimer = setTimeout(() => {
            this.gapTimer = undefined;
            if (this.highestSeen > (this._lastSeq ?? 0)) this.autoSync();
        }, 1000);
    }

    private advance(): void {
        if (this._lastSeq === null) return;
        while (this.ackedSeqs.delete(this._lastSeq + 1)) this._lastSeq++;
        if (this.ackedSeqs.size) for (const s of this.ackedSeqs) if (s <= this._lastSeq) this.ackedSeqs.delete(s);
        this.scheduleCursor();
    }

    private processMsg(raw: Record<string, unknown>, fromSync: boolean): void {
        let m: Message;
        try {
            m = this.normMsg(raw) as Message;
        } catch {
            this.emit('error', new ZimError('protocol', 'zim: msg without a valid id'));
            return;
        }
        const seq = m.seq;
        if (typeof seq !== 'number' || !Number.isInteger(seq) || seq < 1) {
            this.emit('error', new ZimError('protocol', 'zim: msg without a valid seq'));
            return;
        }
        if (this._lastSeq === null) {
            if (!fromSync && this.o.autoSync) {
                //  No baseline yet: sync from the server's cursor for this
                //  device (that page holds this message too).
                this.highestSeen = Math.max(this.highestSeen, seq);
                this.autoSync();
                return;
            }
            //  A sync page, or (without autoSync) the first live message,
            //  sets the baseline.
            this._lastSeq = seq - 1;
        }
        if (seq <= this._lastSeq) return; //  seen already
        if (seq > this._lastSeq + 1) {
            if (!fromSync) {
                if (seq > this.highestSeen) this.emit('gap', { from: this._lastSeq + 1, to: seq - 1, lost: false });
                this.highestSeen = Math.max(this.highestSeen, seq);
                if (this.o.autoSync) this.autoSync();
                return;
            }
            //  The server's sync skipped them: no longer stored.
            this.emit('gap', { from: this._lastSeq + 1, to: seq - 1, lost: true });
        }
        if (this.ackedSeqs.delete(seq)) {
            //  One of this device's own sends, already acked: not news.
            this._lastSeq = seq;
            this.advance();
            return;
        }
        this._lastSeq = seq;
        this.emit('message', m);
        this.advance();
    }

    private autoSync(): void {
        this.startSync()?.catch((err: ZimError) => {
            if (typeof err.code === 'number' && RETRYABLE_SEND_CODES.has(err.code)) {
                //  The server is busy (5030 and the like): sync again after
                //  a jittered backoff (250 ms doubling, at most 10 s).
                if (!this.syncRetryTimer && this.authed) {
                    const base = Math.min(10000, 250 * 2 ** Math.min(this.syncRetries++, 6));
                    this.syncRetryTimer = setTimeout(() => {
                        this.syncRetryTimer = undefined;
                        this.autoSync();
                    }, base / 2 + (Math.random() * base) / 2);
                }
                return;
            }
            if (err.code !== 'disconnected' && err.code !== 'closed') this.emit('error', err);
        });
    }

    //  Starts a sync loop unless one runs (then it goes another round).
    private startSync(): Promise<void> | null {
        if (!this.authed) return null;
        if (this.syncing) {
            this.resyncWanted = true;
            return this.syncing;
        }
        const run = this.syncLoop().finally(() => {
            if (this.syncing === run) this.syncing = null;
        });
        this.syncing = run;
        return run;
    }

    private async syncLoop(): Promise<void> {
        const gen = this.gen;
        for (;;) {
            this.resyncWanted = false;
            const before = this._lastSeq;
            let more = true;
            while (more) {
                const since = this._lastSeq ?? undefined;
                const epoch = this.syncEpoch;
                const page = await this.request((rid) => frames.sync(since, Math.min(this.o.syncLimit, 1000), rid), undefined, true);
                if (epoch !== this.syncEpoch) break; //  sync(since) rewound meanwhile: ask again
                const msgs = Array.isArray(page.msgs) ? (page.msgs as Record<string, unknown>[]) : [];
                for (const m of msgs) {
                    //  closed, or the connection dropped, by a handler
                    if (!this.running) throw new ZimError('closed', 'zim: client closed');
                    if (gen !== this.gen) throw new ZimError('disconnected', 'zim: connection lost');
                    this.processMsg(m, true);
                }
                more = page.more === true && msgs.length > 0;
            }
            //  Behind: a live msg announced a seq that this sync did not
            //  bring (with no baseline yet, any announced seq counts).
            const behind = this.highestSeen > (this._lastSeq ?? 0);
            if (!this.resyncWanted && !behind) return;
            if (!this.resyncWanted && this._lastSeq === before) {
                //  No progress: the announced seqs are not there (yet).
                //  Look again shortly rather than wait for the next msg.
                this.syncLater();
                return;
            }
        }
    }

    //  Sends a cursor and saves the seq within cursorInterval.
    private scheduleCursor(): void {
        if (this.cursorTimer || this._lastSeq === null || !this.running) return;
        this.cursorTimer = setTimeout(() => {
            this.cursorTimer = undefined;
            this.flushCursor(false);
        }, this.o.cursorInterval);
    }

    private flushCursor(now: boolean): void {
        const seq = this._lastSeq;
        if (seq === null) return;
        if (this.o.autoCursor && this.authed && seq > this.cursorSent) {
            this.cursorSent = seq;
            this.enqueue(encodeFrame(frames.cursor(seq)));
            if (now) this.flush();
        }
        if (!now) void this.saveSeq();
    }

    private async saveSeq(): Promise<void> {
        const seq = this._lastSeq;
        if (!this.o.storage || seq === null || seq === this.savedSeq) return;
        this.savedSeq = seq;
        try {
            await this.o.storage.save(seq);
        } catch (err) {
            this.emit('error', new ZimError('protocol', `zim: storage.save failed: ${String(err)}`));
        }
    }
}
