/*  zim-client — JavaScript/TypeScript client SDK for the zim messaging
    server, for browsers and Node >= 20. See docs/SDK.md. */

export {
    ZimClient,
    newCid,
    type Ack,
    type AuthInfo,
    type Gap,
    type HistoryMessage,
    type Message,
    type Page,
    type Push,
    type RoomCount,
    type RoomMessage,
    type Signal,
    type SeqStorage,
    type State,
    type StateDetail,
    type ZimClientEvents,
    type ZimClientOptions,
} from './client.js';
export {
    peerConv,
    groupConv,
    parseConv,
    type ChannelMessage,
    type ChannelPage,
    type Conversation,
    type ConvPage,
    type Group,
    type Receipt,
} from './convs.js';
export { ZimError, ErrorCode, RETRYABLE_SEND_CODES, TOKEN_REFUSED, type LocalErrorCode } from './errors.js';
export { Emitter, type Listener } from './emitter.js';
export { encodeFrame, encodeFrames, decodeFrames, decodeFramesLenient, concat, frames, type Frame } from './codec.js';
export type { WebSocketCtor, WebSocketLike } from './transport.js';
