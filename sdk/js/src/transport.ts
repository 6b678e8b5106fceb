/*  zim-client — WebSocket transport.
    Uses the global WebSocket (browsers, Node >= 22) when present, else the
    `ws` package, imported lazily so browser bundles never need it. Wraps
    either behind a few callbacks; binary messages arrive as Uint8Array. With
    `ws`, an HTTP status refusing the upgrade (403: bad token) is reported. */

import { ZimError } from './errors.js';

/** The subset of the WHATWG WebSocket the SDK uses (the `ws` package has it too). */
export interface WebSocketLike {
    binaryType: string;
    readonly readyState: number;
    send(data: Uint8Array): void;
    close(code?: number, reason?: string): void;
    onopen: ((ev: unknown) => void) | null;
    onmessage: ((ev: { data: unknown }) => void) | null;
    onerror: ((ev: unknown) => void) | null;
    onclose: ((ev: { code: number; reason: string }) => void) | null;
}

/** A WebSocket constructor: the global one, `ws`'s, or a custom one. */
export type WebSocketCtor = new (url: string) => WebSocketLike;

export interface TransportHandlers {
    open(): void;
    message(data: Uint8Array): void;
    text(data: string): void;
    close(code: number, reason: string, httpStatus?: number): void;
}

export interface Transport {
    send(data: Uint8Array): boolean;
    close(code?: number, reason?: string): void;
    readonly open: boolean;
    /** Resolves when the socket has closed. */
    readonly closed: Promise<void>;
    /** True when an HTTP status refusing the upgrade would be reported. */
    readonly reportsHttpStatus: boolean;
}

let wsPackage: Promise<WebSocketCtor | null> | null = null;

//  Imports the `ws` package once; null when it is not installed.
function loadWsPackage(): Promise<WebSocketCtor | null> {
    if (!wsPackage) {
        const name = 'ws'; //  a variable: bundlers must not try to include it
        wsPackage = import(/* @vite-ignore */ /* webpackIgnore: true */ name)
            .then((m: { WebSocket?: WebSocketCtor; default?: WebSocketCtor }) => m.WebSocket ?? m.default ?? null)
            .catch(() => null);
    }
    return wsPackage;
}

/** The WebSocket constructor to use: the given one, the global one, or `ws`'s. */
export async function resolveWebSocket(given?: WebSocketCtor): Promise<WebSocketCtor> {
    if (given) return given;
    const g = (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
    if (g) return g;
    const ws = await loadWsPackage();
    if (ws) return ws;
    throw new ZimError('transport', 'zim: no WebSocket implementation: install the "ws" package (npm i ws)');
}

/** True when ctor is the `ws` package's class (it reports HTTP statuses). */
export function isWsPackage(ctor: WebSocketCtor): boolean {
    const proto = (ctor as unknown as { prototype?: Record<string, unknown> }).prototype;
    return !!proto && typeof proto.on === 'function' && typeof proto.terminate === 'function';
}

const HTTP_STATUS = /Unexpected server response: (\d+)/;

/** Opens a WebSocket to url and reports its events to h. */
export function openTransport(Ctor: WebSocketCtor, url: string, h: TransportHandlers): Transport {
    const ws = new Ctor(url);
    const reportsHttpStatus = isWsPackage(Ctor);
    ws.binaryType = 'arraybuffer';
    let httpStatus: number | undefined;
    let closed = false;
    let markClosed!: () => void;
    const closedPromise = new Promise<void>((resolve) => { markClosed = resolve; });
    ws.onopen = () => h.open();
    ws.onmessage = (ev) => {
        const d = ev.data;
        if (d instanceof ArrayBuffer) h.message(new Uint8Array(d));
        else if (ArrayBuffer.isView(d)) h.message(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
        else if (typeof d === 'string') h.text(d);
    };
    ws.onerror = (ev) => {
        //  `ws` puts the refused upgrade's status in the error message.
        const e = ev as { message?: string; error?: { message?: string } };
        const m = HTTP_STATUS.exec(e?.error?.message ?? e?.message ?? '');
        if (m) httpStatus = Number(m[1]);
    };
    ws.onclose = (ev) => {
        if (closed) return;
        closed = true;
        markClosed();
        h.close(ev.code, ev.reason ?? '', httpStatus);
    };
    return {
        reportsHttpStatus,
        closed: closedPromise,
        get open() {
            return ws.readyState === 1;
        },
        send(data: Uint8Array): boolean {
            if (ws.readyState !== 1) return false;
            ws.send(data);
            return true;
        },
        close(code = 1000, reason = '') {
            try {
                if (ws.readyState === 0 && reportsHttpStatus) {
                    //  `ws` cannot close() while connecting; terminate() aborts.
                    (ws as unknown as { terminate(): void }).terminate();
                } else if (ws.readyState <= 1) {
                    ws.close(code, reason);
                }
            } catch {
                //  closing a socket that is already failing: nothing to do
            }
        },
    };
}
