/*  zim-client — wire codec.
    One WebSocket binary message holds one or more msgpack maps back to back
    (docs/PROTOCOL.md). Client frames are built with a fixed key order and the
    smallest integer encoding, so they match tests/vectors/c2s-*.hex byte for
    byte. Integers that do not fit a JS number exactly (message ids) decode to
    bigint; every other integer decodes to number. */

import { Decoder, Encoder } from '@msgpack/msgpack';

/** A decoded frame: a msgpack map with string keys. */
export type Frame = { op: string; [key: string]: unknown };

const encoder = new Encoder({ useBigInt64: true, ignoreUndefined: true });
const decoder = new Decoder({ useBigInt64: true });

const U32_END = 0x1_0000_0000; //  2^32
const I32_MIN = -0x8000_0000; //  -2^31
const BIG_U32_END = BigInt(U32_END);
const BIG_I32_MIN = BigInt(I32_MIN);
const BIG_U64_MAX = (BigInt(1) << BigInt(64)) - BigInt(1);
const BIG_I64_MIN = -(BigInt(1) << BigInt(63));
const BIG_SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);
const BIG_SAFE_MIN = BigInt(Number.MIN_SAFE_INTEGER);

function isPlainObject(v: unknown): v is Record<string, unknown> {
    if (v === null || typeof v !== 'object') return false;
    const proto = Object.getPrototypeOf(v);
    return proto === Object.prototype || proto === null;
}

//  Prepares a value for the encoder so integers get msgpack-c's smallest
//  encoding: 32-bit-range bigints become numbers, integer numbers beyond 32
//  bits become bigints (encoded as uint64/int64 rather than float64).
//  Copies only the containers it has to change.
function prep(v: unknown): unknown {
    if (typeof v === 'number') {
        if (Number.isSafeInteger(v) && (v >= U32_END || v < I32_MIN)) return BigInt(v);
        return v;
    }
    if (typeof v === 'bigint') {
        if (v < BIG_U32_END && v >= BIG_I32_MIN) return Number(v);
        if (v > BIG_U64_MAX || v < BIG_I64_MIN) throw new RangeError(`integer ${v} does not fit 64 bits`);
        return v;
    }
    if (Array.isArray(v)) {
        let out: unknown[] | null = null;
        for (let i = 0; i < v.length; i++) {
            const p = prep(v[i]);
            if (p !== v[i]) {
                if (!out) out = v.slice();
                out[i] = p;
            }
        }
        return out ?? v;
    }
    if (isPlainObject(v)) {
        let out: Record<string, unknown> | null = null;
        for (const k of Object.keys(v)) {
            const p = prep(v[k]);
            if (p !== v[k]) {
                if (!out) out = { ...v };
                out[k] = p;
            }
        }
        return out ?? v;
    }
    if (v instanceof Map) {
        const out = new Map<unknown, unknown>();
        for (const [k, x] of v) out.set(prep(k), prep(x));
        return out;
    }
    return v;
}

//  Turns decoded bigints that fit a JS number exactly into numbers, in place
//  (the decoded tree is ours).
function norm(v: unknown): unknown {
    if (typeof v === 'bigint') return v <= BIG_SAFE_MAX && v >= BIG_SAFE_MIN ? Number(v) : v;
    if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) v[i] = norm(v[i]);
        return v;
    }
    if (v !== null && typeof v === 'object' && !ArrayBuffer.isView(v)) {
        const o = v as Record<string, unknown>;
        for (const k of Object.keys(o)) o[k] = norm(o[k]);
        return v;
    }
    return v;
}

/** Encodes one frame (a map; keys in insertion order; undefined values left out). */
export function encodeFrame(frame: Record<string, unknown>): Uint8Array {
    return encoder.encode(prep(frame));
}

/** Encodes frames back to back, as one WebSocket message. */
export function encodeFrames(frames: Record<string, unknown>[]): Uint8Array {
    return concat(frames.map(encodeFrame));
}

/** Concatenates encoded frames into one buffer. */
export function concat(parts: Uint8Array[]): Uint8Array {
    if (parts.length === 1) return parts[0];
    let size = 0;
    for (const p of parts) size += p.length;
    const out = new Uint8Array(size);
    let pos = 0;
    for (const p of parts) {
        out.set(p, pos);
        pos += p.length;
    }
    return out;
}

/** Decodes every frame of one WebSocket message. Throws on malformed input
    or on a value that is not a map with a string `op`. */
export function decodeFrames(data: Uint8Array | ArrayBuffer): Frame[] {
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
    const frames: Frame[] = [];
    for (const value of decoder.decodeMulti(bytes)) {
        if (!isPlainObject(value) || typeof value.op !== 'string')
            throw new TypeError('zim: server frame is not a map with a string op');
        frames.push(norm(value) as Frame);
    }
    return frames;
}

/** Decodes the frames of one WebSocket message up to the first malformed
    one: the frames before it, and the error (the rest is dropped, as the
    server does). */
export function decodeFramesLenient(data: Uint8Array | ArrayBuffer): { frames: Frame[]; error?: Error } {
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
    const out: Frame[] = [];
    try {
        for (const value of decoder.decodeMulti(bytes)) {
            if (!isPlainObject(value) || typeof value.op !== 'string')
                return { frames: out, error: new TypeError('server frame is not a map with a string op') };
            out.push(norm(value) as Frame);
        }
    } catch (err) {
        return { frames: out, error: err instanceof Error ? err : new Error(String(err)) };
    }
    return { frames: out };
}

/** Builders for every client frame, with the key order of the vectors. */
export const frames = {
    auth(token: string, device?: string): Record<string, unknown> {
        return { op: 'auth', token, device };
    },
    ping(t?: unknown): Record<string, unknown> {
        return { op: 'ping', t };
    },
    send(to: string, cid: string, body: unknown): Record<string, unknown> {
        return { op: 'send', to, cid, body };
    },
    sendGroup(group: string, cid: string, body: unknown): Record<string, unknown> {
        return { op: 'send', group, cid, body };
    },
    sync(since: number | undefined, limit: number, rid: number): Record<string, unknown> {
        return { op: 'sync', since, limit, rid };
    },
    cursor(seq: number): Record<string, unknown> {
        return { op: 'cursor', seq };
    },
    history(peer: string, before: bigint | number | undefined, limit: number, rid: number): Record<string, unknown> {
        return { op: 'history', peer, before, limit, rid };
    },
    join(room: string, rid?: number, counts?: boolean): Record<string, unknown> {
        return { op: 'join', room, rid, counts: counts ? true : undefined };
    },
    leave(room: string, rid?: number): Record<string, unknown> {
        return { op: 'leave', room, rid };
    },
    publish(room: string, body: unknown, rid?: number): Record<string, unknown> {
        return { op: 'publish', room, body, rid };
    },
    signal(to: string, body: unknown): Record<string, unknown> {
        return { op: 'signal', to, body };
    },
    read(conv: string, seq: number): Record<string, unknown> {
        return { op: 'read', conv, seq };
    },
    delivered(conv: string, seq: number): Record<string, unknown> {
        return { op: 'delivered', conv, seq };
    },
    convs(limit: number, before: bigint | number | undefined, rid: number): Record<string, unknown> {
        return { op: 'convs', limit, before, rid };
    },
    mute(conv: string, until?: number): Record<string, unknown> {
        return { op: 'mute', conv, until };
    },
    state(background: boolean): Record<string, unknown> {
        return { op: 'state', background };
    },
    groups(rid?: number): Record<string, unknown> {
        return { op: 'groups', rid };
    },
    csync(group: string, since: number, limit: number, rid: number): Record<string, unknown> {
        return { op: 'csync', group, since, limit, rid };
    },
};
