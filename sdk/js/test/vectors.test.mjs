// Vector tests: the SDK's encoder produces exactly tests/vectors/c2s-*.hex
// for the same logical frames, and its decoder reads every s2c-*.hex.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { encodeFrame, encodeFrames, decodeFrames, decodeFramesLenient, frames } from '../dist/index.js';

const dir = process.env.ZIM_VECTORS ?? fileURLToPath(new URL('../../../tests/vectors/', import.meta.url));

function vector(name) {
    const hex = readFileSync(join(dir, `${name}.hex`), 'utf8').replace(/\s+/g, '');
    return Uint8Array.from(Buffer.from(hex, 'hex'));
}

const ID = 0x037aec2c00001000n;
const TS = 1763856000000;

const c2s = {
    'c2s-auth': frames.auth('TOKEN', 'phone'),
    'c2s-ping': frames.ping(1),
    'c2s-send': frames.send('bob', 'c1', 'hi'),
    'c2s-sync': frames.sync(0, 100, 1),
    'c2s-cursor': frames.cursor(5),
    'c2s-history': frames.history('bob', 0, 20, 2),
};

test('every c2s vector has an encoder case', () => {
    const files = readdirSync(dir).filter((f) => f.startsWith('c2s-')).map((f) => f.replace(/\.hex$/, ''));
    assert.ok(files.length >= 6);
    assert.deepEqual(files.sort(), Object.keys(c2s).sort());
});

for (const [name, frame] of Object.entries(c2s)) {
    test(`encode ${name}`, () => {
        assert.deepEqual(Buffer.from(encodeFrame(frame)).toString('hex'), Buffer.from(vector(name)).toString('hex'));
    });
}

test('history before as a bigint id 0 encodes as the vector (smallest int)', () => {
    assert.deepEqual(encodeFrame(frames.history('bob', 0n, 20, 2)), vector('c2s-history'));
});

test('coalesced frames are the concatenation of the vectors', () => {
    const both = encodeFrames([frames.send('bob', 'c1', 'hi'), frames.cursor(5)]);
    assert.deepEqual(both, Uint8Array.from([...vector('c2s-send'), ...vector('c2s-cursor')]));
});

test('integers get msgpack-c smallest widths; ids above 2^53 stay exact', () => {
    const hex = (v) => Buffer.from(encodeFrame({ op: 'x', v })).toString('hex').slice(16);
    assert.equal(hex(0x7f), '7f');
    assert.equal(hex(0xff), 'ccff');
    assert.equal(hex(0x100), 'cd0100');
    assert.equal(hex(0x10000), 'ce00010000');
    assert.equal(hex(TS), 'cf0000019aae02a400'); // a safe integer beyond 32 bits: uint64, not float
    assert.equal(hex(BigInt(TS)), 'cf0000019aae02a400');
    assert.equal(hex(ID), 'cf037aec2c00001000');
    assert.equal(hex(5n), '05');
    assert.equal(hex(-1), 'ff');
    assert.equal(hex(-200), 'd1ff38');
    assert.equal(hex(-(2 ** 40)), 'd3ffffff0000000000');
    assert.equal(hex(1.5), 'cb3ff8000000000000');
    // undefined optional fields are left out
    assert.deepEqual(encodeFrame(frames.sync(undefined, 100, 1)), encodeFrame({ op: 'sync', limit: 100, rid: 1 }));
});

const msg = { op: 'msg', seq: 1, id: ID, from: 'alice', to: 'bob', conv: 'p:alice:bob', body: 'hi', ts: TS };
const ack = { op: 'ack', cid: 'c1', id: ID, seq: 1, ts: TS };

const s2c = {
    's2c-auth_ok': [{ op: 'auth_ok', app: 'demo', uid: 'alice', device: 'phone' }],
    's2c-pong': [{ op: 'pong', t: 1 }],
    's2c-ack': [ack],
    's2c-error': [{ op: 'error', code: 4029, text: 'rate limited', cid: 'c1' }],
    's2c-msg': [msg],
    's2c-page': [{ op: 'page', rid: 1, more: false, msgs: [(({ op, ...m }) => m)(msg)] }],
    's2c-ack+msg': [ack, msg],
};

test('every s2c vector has a decoder case', () => {
    const files = readdirSync(dir).filter((f) => f.startsWith('s2c-')).map((f) => f.replace(/\.hex$/, ''));
    assert.deepEqual(files.sort(), Object.keys(s2c).sort());
});

for (const [name, expected] of Object.entries(s2c)) {
    test(`decode ${name}`, () => {
        const got = decodeFrames(vector(name));
        assert.deepEqual(got, expected);
        // the SDK's own encoder produces the server's bytes for the same frames
        assert.deepEqual(encodeFrames(expected), vector(name));
    });
}

test('decoded id is an exact bigint, ts and seq are numbers', () => {
    const [a, m] = decodeFrames(vector('s2c-ack+msg'));
    assert.equal(typeof a.id, 'bigint');
    assert.equal(a.id, 250772402995204096n);
    assert.equal(typeof a.ts, 'number');
    assert.equal(typeof m.seq, 'number');
    assert.equal(new Date(m.ts).toISOString(), '2025-11-23T00:00:00.000Z');
});

test('a truncated message yields the frames before the damage and an error', () => {
    const bytes = vector('s2c-ack+msg');
    assert.throws(() => decodeFrames(bytes.subarray(0, bytes.length - 3)));
    const r = decodeFramesLenient(bytes.subarray(0, bytes.length - 3));
    assert.equal(r.frames.length, 1);
    assert.equal(r.frames[0].op, 'ack');
    assert.ok(r.error);
    const notMap = decodeFramesLenient(Uint8Array.from([0x01]));
    assert.equal(notMap.frames.length, 0);
    assert.ok(notMap.error);
});

// Rooms and signals (tests/vectors/rooms/).
const rooms = {
    'rooms/c2s-join': frames.join('lobby', 1, true),
    'rooms/c2s-leave': frames.leave('lobby', 2),
    'rooms/c2s-publish': frames.publish('lobby', 'hi', 3),
    'rooms/c2s-signal': frames.signal('bob', 'typing'),
};

test('every rooms c2s vector has an encoder case', () => {
    const files = readdirSync(join(dir, 'rooms')).filter((f) => f.startsWith('c2s-')).map((f) => `rooms/${f.replace(/\.hex$/, '')}`);
    assert.deepEqual(files.sort(), Object.keys(rooms).sort());
});

for (const [name, frame] of Object.entries(rooms)) {
    test(`encode ${name}`, () => {
        assert.deepEqual(Buffer.from(encodeFrame(frame)).toString('hex'), Buffer.from(vector(name)).toString('hex'));
    });
}

test('decode the rooms server frames', () => {
    assert.deepEqual(decodeFrames(vector('rooms/s2c-joined')), [{ op: 'joined', room: 'lobby', rid: 1, online: 2 }]);
    assert.deepEqual(decodeFrames(vector('rooms/s2c-left')), [{ op: 'left', room: 'lobby', rid: 2 }]);
    assert.deepEqual(decodeFrames(vector('rooms/s2c-room')), [{ op: 'room', room: 'lobby', body: 'hi', ts: TS, from: 'alice' }]);
    assert.deepEqual(decodeFrames(vector('rooms/s2c-published')), [{ op: 'published', rid: 3 }]);
    assert.deepEqual(decodeFrames(vector('rooms/s2c-count')), [{ op: 'count', room: 'lobby', online: 3 }]);
    assert.deepEqual(decodeFrames(vector('rooms/s2c-signal')), [{ op: 'signal', from: 'alice', body: 'typing' }]);
    assert.deepEqual(decodeFrames(vector('rooms/s2c-error')), [{ op: 'error', code: 4050, text: 'not in this room', rid: 3 }]);
});

// Receipts, the conversation list, mute and the background
// (tests/vectors/receipts/), groups and channels (tests/vectors/groups/).
const more = {
    'receipts/c2s-read': frames.read('p:alice:bob', 5),
    'receipts/c2s-delivered': frames.delivered('p:alice:bob', 6),
    'receipts/c2s-convs': frames.convs(20, undefined, 3),
    'receipts/c2s-mute': frames.mute('p:alice:bob', 0),
    'receipts/c2s-state': frames.state(true),
    'groups/c2s-send-group': frames.sendGroup('team', 'g1', 'hi'),
    'groups/c2s-groups': frames.groups(4),
    'groups/c2s-csync': frames.csync('news', 0, 1, 5),
};

test('every receipts and groups c2s vector has an encoder case', () => {
    const files = ['receipts', 'groups'].flatMap((d) =>
        readdirSync(join(dir, d)).filter((f) => f.startsWith('c2s-')).map((f) => `${d}/${f.replace(/\.hex$/, '')}`));
    assert.deepEqual(files.sort(), Object.keys(more).sort());
});

for (const [name, frame] of Object.entries(more)) {
    test(`encode ${name}`, () => {
        assert.deepEqual(Buffer.from(encodeFrame(frame)).toString('hex'), Buffer.from(vector(name)).toString('hex'));
    });
}

test('decode the receipts and groups server frames', () => {
    assert.deepEqual(decodeFrames(vector('receipts/s2c-receipt')), [{ op: 'receipt', conv: 'p:alice:bob', user: 'bob', read: 1, delivered: 1 }]);
    assert.deepEqual(decodeFrames(vector('receipts/s2c-convs')), [{
        op: 'convs', rid: 3, more: false,
        convs: [{ conv: 'p:alice:bob', id: ID, from: 'alice', ts: TS, body: 'hi', seq: 1, unread: 1, read: 0, delivered: 0 }],
    }]);
    assert.deepEqual(decodeFrames(vector('groups/s2c-ack-group')), [{ op: 'ack', cid: 'g1', id: ID, seq: 3, ts: TS, gseq: 7 }]);
    assert.deepEqual(decodeFrames(vector('groups/s2c-msg-group')), [
        { op: 'msg', seq: 3, id: ID, from: 'alice', to: 'team', conv: 'g:team', body: 'hi', ts: TS, group: 'team' },
    ]);
    assert.deepEqual(decodeFrames(vector('groups/s2c-page-csync')), [{
        op: 'page', rid: 5, more: false, reset: true,
        msgs: [{ id: ID, from: 'alice', to: 'news', conv: 'g:news', body: 'hi', ts: TS, group: 'news', gseq: 30 }],
    }]);
    assert.deepEqual(decodeFrames(vector('groups/s2c-groups')), [
        { op: 'groups', rid: 4, groups: [{ group: 'news', kind: 'channel', gseq: 30, joined: 0, members: 2 }] },
    ]);
});
