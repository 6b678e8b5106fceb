/*  zim-client — conversations, receipts, groups and channels: the types of
    the `receipt`, `convs`, `groups` and channel `page` frames, conversation
    keys (docs/PROTOCOL.md, "Receipts and the conversation list", "Groups and
    channels"), and the lenient decoders that turn server frames into them. */

import { ErrorCode, ZimError } from './errors.js';

/** A `receipt` frame: `user`'s cursors in `conv`. Its seqs are always seqs
    of the inbox of the user who receives it: when `user` is this user, its
    own cursors now (after a read()/delivered() of this or another device);
    when `user` is the other side of a 1:1 conversation, "`user` has read (or
    got) my messages up to my seq N". Values only grow. */
export interface Receipt {
    conv: string;
    user: string;
    read?: number;
    delivered?: number;
}

/** One entry of the conversation list (convs()), with the key names of the
    protocol. Seqs are seqs of this user's inbox. */
export interface Conversation {
    /** `p:` + the two user ids sorted, joined by `:`; or `g:` + a group id. */
    conv: string;
    /** The other user of a `p:` conversation (derived from `conv`). */
    peer?: string;
    /** The group of a `g:` conversation (derived from `conv`). */
    group?: string;
    /** The last message: its id, sender, time, body and seq (in this user's inbox). */
    id: bigint;
    from: string;
    ts: number;
    body: unknown;
    seq: number;
    /** Messages of others after the read cursor (this user's own never count). */
    unread: number;
    /** This user's cursors (0: none yet). */
    read: number;
    delivered: number;
    /** `p:` only, absent when 0: the other side's cursors, in this user's
        seqs ("read up to my message with this seq"). */
    peer_read?: number;
    peer_delivered?: number;
    /** Present when muted: pushes muted until this time (ms since the epoch). */
    muted?: number;
    [key: string]: unknown;
}

/** A page of the conversation list, most recent first. For the next page
    pass the last entry's `id` as `before`, while `more` is true. */
export interface ConvPage {
    convs: Conversation[];
    more: boolean;
}

/** A group or channel the user is a member of (groups()). */
export interface Group {
    group: string;
    /** `group`: messages come into the inbox (`message` events, with
        `group` set); `channel`: read them with csync(). */
    kind: 'group' | 'channel' | string;
    /** The head of the group's log: the gseq of its newest message. */
    gseq: number;
    /** The member reads the messages after this gseq. */
    joined: number;
    /** Member count. */
    members: number;
    [key: string]: unknown;
}

/** A message of a channel's log (csync()): no inbox `seq`, a gapless `gseq`. */
export interface ChannelMessage {
    gseq: number;
    id: bigint;
    from: string;
    /** The channel id (as `group`). */
    to: string;
    /** `g:` + the channel id. */
    conv: string;
    group: string;
    body: unknown;
    ts: number;
    [key: string]: unknown;
}

/** A csync() page, oldest first. `reset` is true when the reader was more
    than the server's `csync_max_behind` messages behind: the page holds the
    newest messages instead (never a silent cut): drop what you had and read
    on from the last message's gseq. Ask again from the last gseq while
    `more` is true. */
export interface ChannelPage {
    msgs: ChannelMessage[];
    more: boolean;
    reset: boolean;
}

const UID = /^[A-Za-z0-9_.@-]{1,64}$/;

/** The conversation key of users a and b: `p:` + the two ids sorted
    (byte order), joined by `:` (as in `msg.conv`). */
export function peerConv(a: string, b: string): string {
    return a <= b ? `p:${a}:${b}` : `p:${b}:${a}`;
}

/** The conversation key of a group or channel: `g:` + its id. */
export function groupConv(group: string): string {
    return `g:${group}`;
}

/** Splits a conversation key: `{peer}` (the user that is not `me`) for
    `p:`, `{group}` for `g:`; null for a string that is not a key. */
export function parseConv(conv: string, me?: string): { peer?: string; group?: string; users?: [string, string] } | null {
    if (conv.startsWith('g:')) return UID.test(conv.slice(2)) ? { group: conv.slice(2) } : null;
    if (!conv.startsWith('p:')) return null;
    const rest = conv.slice(2);
    const colon = rest.indexOf(':');
    if (colon < 0) return null;
    const a = rest.slice(0, colon);
    const b = rest.slice(colon + 1);
    if (!UID.test(a) || !UID.test(b) || a > b) return null;
    const out: { peer?: string; users: [string, string] } = { users: [a, b] };
    if (me !== undefined) out.peer = a === me ? b : a;
    return out;
}

/** The error the server would answer a read/delivered/mute of `conv` by
    user `me` with (4001: not a key; 4030: not `me`'s), or null. */
export function convError(conv: string, me: string): ZimError | null {
    const c = typeof conv === 'string' ? parseConv(conv, me) : null;
    if (!c) return new ZimError(ErrorCode.BAD_FIELD, `zim: ${String(conv)} is not a conversation (p:UID:UID sorted, or g:GROUP)`);
    if (c.users && c.users[0] !== me && c.users[1] !== me)
        return new ZimError(ErrorCode.FORBIDDEN, `zim: ${conv} is not a conversation of ${me}`);
    return null;
}

function num(v: unknown): number | undefined {
    return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : undefined;
}

/** A `receipt` frame as a Receipt (lenient: unknown keys dropped). */
export function toReceipt(f: Record<string, unknown>): Receipt {
    const r: Receipt = { conv: String(f.conv ?? ''), user: String(f.user ?? '') };
    const read = num(f.read);
    const delivered = num(f.delivered);
    if (read !== undefined) r.read = read;
    if (delivered !== undefined) r.delivered = delivered;
    return r;
}

/** One entry of a `convs` frame; `toId` turns the wire id into a bigint. */
export function toConversation(e: Record<string, unknown>, me: string, toId: (v: unknown) => bigint): Conversation {
    const c = { ...e } as Conversation;
    c.conv = String(e.conv ?? '');
    c.id = toId(e.id ?? 0);
    for (const k of ['seq', 'unread', 'read', 'delivered', 'ts'] as const) c[k] = num(e[k]) ?? 0;
    const parsed = parseConv(c.conv, me);
    if (parsed?.peer !== undefined) c.peer = parsed.peer;
    if (parsed?.group !== undefined) c.group = parsed.group;
    return c;
}

/** One entry of a `groups` frame. */
export function toGroup(e: Record<string, unknown>): Group {
    const g = { ...e } as Group;
    g.group = String(e.group ?? '');
    g.kind = String(e.kind ?? 'group');
    g.gseq = num(e.gseq) ?? 0;
    g.joined = num(e.joined) ?? 0;
    g.members = num(e.members) ?? 0;
    return g;
}
