/*  zim-client — a minimal typed event emitter (on/off/once), the same in the
    browser and in Node. A listener that throws does not disturb the client:
    the exception is rethrown asynchronously, where the host reports it. */

export type Listener<A extends unknown[]> = (...args: A) => void;

export class Emitter<E extends { [K in keyof E]: unknown[] }> {
    private listeners: { [K in keyof E]?: Listener<E[K]>[] } = {};

    /** Adds a listener; returns a function that removes it. */
    on<K extends keyof E>(event: K, fn: Listener<E[K]>): () => void {
        (this.listeners[event] ??= []).push(fn);
        return () => this.off(event, fn);
    }

    /** Adds a listener called at most once. */
    once<K extends keyof E>(event: K, fn: Listener<E[K]>): () => void {
        const wrapper: Listener<E[K]> = (...args) => {
            this.off(event, wrapper);
            fn(...args);
        };
        return this.on(event, wrapper);
    }

    /** Removes a listener, or every listener of the event when fn is omitted. */
    off<K extends keyof E>(event: K, fn?: Listener<E[K]>): this {
        const list = this.listeners[event];
        if (!list) return this;
        if (!fn) delete this.listeners[event];
        else {
            const i = list.indexOf(fn);
            if (i >= 0) list.splice(i, 1);
        }
        return this;
    }

    /** Number of listeners of an event. */
    listenerCount<K extends keyof E>(event: K): number {
        return this.listeners[event]?.length ?? 0;
    }

    protected emit<K extends keyof E>(event: K, ...args: E[K]): void {
        const list = this.listeners[event];
        if (!list) return;
        for (const fn of list.slice()) {
            try {
                fn(...args);
            } catch (err) {
                setTimeout(() => { throw err; }, 0);
            }
        }
    }
}
