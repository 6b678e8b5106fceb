/*  zim-client — errors.
    Server errors carry the numeric code of docs/PROTOCOL.md; errors raised by
    the SDK itself carry a string code. */

/** The server's error codes (docs/PROTOCOL.md, "Errors"). */
export const ErrorCode = {
    MALFORMED: 4000,
    BAD_FIELD: 4001,
    TOO_LARGE: 4002,
    UNKNOWN_OP: 4003,
    BAD_RECIPIENT: 4004,
    CID_CONFLICT: 4009,
    AUTH_REQUIRED: 4010,
    BAD_TOKEN: 4011,
    TOKEN_EXPIRED: 4012,
    ALREADY_AUTHED: 4013,
    AUTH_TIMEOUT: 4014,
    AUTH_FAILURES: 4015,
    TOKEN_NOT_YET: 4016,
    TOKEN_CLAIMS: 4017,
    TOKEN_ALG: 4018,
    TOO_MANY_READS: 4028,
    RATE_LIMITED: 4029,
    FORBIDDEN: 4030,
    TOO_MANY_CONNS: 4031,
    NOT_MEMBER: 4040,
    NO_GROUP: 4041,
    GROUP_FULL: 4042,
    GROUP_EXISTS: 4043,
    NOT_CHANNEL: 4044,
    NOT_IN_ROOM: 4050,
    TOO_MANY_ROOMS: 4051,
    BAD_ROOM: 4052,
    PUBLISH_DENIED: 4053,
    ROOM_DENIED: 4054,
    SIGNAL_RATE: 4055,
    DISCONNECTED: 4056,
    IDLE_TIMEOUT: 4080,
    SLOW_CONSUMER: 4090,
    INTERNAL: 5000,
    UNAVAILABLE: 5030,
    TIMEOUT: 5040,
} as const;

/** Codes of errors raised by the SDK itself. */
export type LocalErrorCode =
    | 'timeout' //  no answer within sendTimeout / requestTimeout
    | 'disconnected' //  the connection dropped while a request was in flight
    | 'closed' //  close() was called, or the client stopped for good
    | 'transport' //  no WebSocket implementation, or the socket failed
    | 'token' //  getToken() failed
    | 'protocol'; //  the server sent something undecodable

/** Server error codes of a refused token (4011, 4012, 4016-4018): the
    connection cannot authenticate with it, so the SDK does not wait for
    the server's auth_timeout (a fresh token comes from getToken, if set). */
export const TOKEN_REFUSED: ReadonlySet<number> = new Set<number>([
    ErrorCode.BAD_TOKEN,
    ErrorCode.TOKEN_EXPIRED,
    ErrorCode.TOKEN_NOT_YET,
    ErrorCode.TOKEN_CLAIMS,
    ErrorCode.TOKEN_ALG,
]);

/** Server error codes after which the SDK retries a send with the same cid. */
export const RETRYABLE_SEND_CODES: ReadonlySet<number> = new Set([
    ErrorCode.RATE_LIMITED,
    ErrorCode.INTERNAL,
    ErrorCode.UNAVAILABLE,
    ErrorCode.TIMEOUT,
]);

export class ZimError extends Error {
    /** Numeric server code, or a string code for SDK-side failures. */
    readonly code: number | LocalErrorCode;
    /** The send's cid when the error answers a send. */
    readonly cid?: string;
    /** The request id when the error answers a sync or history request. */
    readonly rid?: number;
    /** HTTP status when the WebSocket upgrade was refused (403: bad token). */
    readonly status?: number;

    constructor(code: number | LocalErrorCode, message: string,
                extra: { cid?: string; rid?: number; status?: number } = {}) {
        super(message);
        this.name = 'ZimError';
        this.code = code;
        if (extra.cid !== undefined) this.cid = extra.cid;
        if (extra.rid !== undefined) this.rid = extra.rid;
        if (extra.status !== undefined) this.status = extra.status;
    }
}
