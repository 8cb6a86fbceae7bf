// The API, as any third-party client would use it: Apollo Client over HTTP
// for queries and mutations, one graphql-ws socket for subscriptions and
// for the edits and cursors that must keep their order with them.
import { ApolloClient, ApolloLink, CombinedGraphQLErrors, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { SetContextLink } from '@apollo/client/link/context';
import { createClient, type Client } from 'graphql-ws';
import { accessToken, refresh } from './auth';

export const apollo = new ApolloClient({
  link: ApolloLink.from([
    new SetContextLink(async (ctx) => {
      const t = await accessToken();
      return { headers: { ...ctx.headers, ...(t ? { Authorization: `Bearer ${t}` } : {}) } };
    }),
    new HttpLink({ uri: '/graphql' }),
  ]),
  cache: new InMemoryCache(),
  defaultOptions: { query: { fetchPolicy: 'no-cache' }, mutate: { fetchPolicy: 'no-cache' } },
});

/** The error code (extensions.code) of a failed operation, or NETWORK. */
export function errorCode(err: unknown): string {
  if (CombinedGraphQLErrors.is(err)) return String(err.errors[0]?.extensions?.code ?? 'INTERNAL');
  const e = err as { extensions?: { code?: string } }[] | undefined;
  if (Array.isArray(e) && e[0]?.extensions?.code) return e[0].extensions.code;
  return 'NETWORK';
}

export function errorMessage(err: unknown): string {
  if (CombinedGraphQLErrors.is(err)) return err.errors.map((e) => e.message).join('; ');
  if (Array.isArray(err)) return err.map((e) => e.message).join('; ');
  return err instanceof Error ? err.message : String(err);
}

export async function query<T = any>(q: string, variables?: object): Promise<T> {
  const r = await apollo.query<T>({ query: gql(q), variables: variables as any });
  return r.data as T;
}

export async function mutate<T = any>(m: string, variables?: object): Promise<T> {
  const r = await apollo.mutate<T>({ mutation: gql(m), variables: variables as any });
  return r.data as T;
}

// Connection state for the "reconnecting…" banner.
export type SocketState = 'connecting' | 'connected' | 'reconnecting';
let state: SocketState = 'connecting';
const stateListeners = new Set<(s: SocketState) => void>();
export const socketState = () => state;
export function onSocketState(l: (s: SocketState) => void) {
  stateListeners.add(l);
  return () => void stateListeners.delete(l);
}
function setState(s: SocketState) {
  state = s;
  stateListeners.forEach((l) => l(s));
}

let socketCount = 0;
let client: Client | null = null;

// A network that drops silently leaves a socket open but dead, and its
// close handshake would hang too: the client pings after 10 s without a
// pong and drops (terminates) a socket whose pong is 6 s late, or at once
// when the browser goes offline. Subscriptions resume on the next socket.
const PING_EVERY = 10_000;
const PONG_WITHIN = 6_000;
let pongDue: ReturnType<typeof setTimeout> | undefined;

/** The socket (created on first use; reconnects with backoff for ever). */
export function ws(): Client {
  if (client) return client;
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`;
  client = createClient({
    url,
    lazy: true,
    // A function: each reconnect authenticates with the current token (a
    // socket closes with 4403 when its token expires).
    connectionParams: async () => {
      const t = await accessToken();
      return t ? { authorization: `Bearer ${t}` } : {};
    },
    keepAlive: PING_EVERY,
    retryAttempts: Infinity,
    shouldRetry: () => true,
    // Backoff, cut short when the browser comes back online.
    retryWait: async (retries) => {
      const ms = Math.min(10_000, 300 * 2 ** retries) * (0.5 + Math.random() / 2);
      await new Promise<void>((r) => {
        const done = () => { clearTimeout(t); window.removeEventListener('online', done); r(); };
        const t = setTimeout(done, ms);
        window.addEventListener('online', done);
      });
    },
    on: {
      connected: () => setState('connected'),
      ping: (received) => {
        if (received) return; // the server's, answered by the client
        clearTimeout(pongDue);
        pongDue = setTimeout(dropSocket, PONG_WITHIN);
      },
      pong: (received) => { if (received) clearTimeout(pongDue); },
      closed: (e) => {
        clearTimeout(pongDue);
        if (socketCount > 0) setState('reconnecting');
        if ((e as CloseEvent)?.code === 4403) void refresh().catch(() => {});
      },
    },
  });
  window.addEventListener('offline', dropSocket);
  return client;
}

/** Forces a reconnect (the socket closes; subscriptions resume). For tests and a stuck socket. */
export function dropSocket() {
  client?.terminate();
}

export interface Sink<T> { next(v: T): void; error?(e: unknown): void; complete?(): void }

// Errors after which a stream is worth asking for again: the server ends
// typing, presence and sessionExecutions with UNAVAILABLE when its bus
// connection drops (README "Realtime").
const TRANSIENT = new Set(['UNAVAILABLE', 'INTERNAL', 'RATE_LIMITED', 'NETWORK']);

/**
 * Subscribes over the socket. variables is called each time the operation
 * is (re)sent: graphql-ws sends the same payload object again after a
 * reconnect, and JSON.stringify reads the getter then, so a resumable
 * stream asks for what came after the last item it saw. A stream that
 * ends with a transient error (or, when endless, completes) is subscribed
 * again with backoff; other errors go to sink.error.
 */
export function subscribe<T = any>(q: string, variables: () => object, sink: Sink<T>, { endless = true } = {}): () => void {
  socketCount++;
  const payload = {
    query: q,
    get variables() {
      return variables();
    },
  };
  let gen = 0, retries = 0, stopped = false;
  let stop = () => {};
  let timer: ReturnType<typeof setTimeout> | undefined;
  const again = () => {
    stop();
    const ms = Math.min(10_000, 250 * 2 ** retries++) * (0.5 + Math.random() / 2);
    timer = setTimeout(start, ms);
  };
  const start = () => {
    if (stopped) return;
    const mine = ++gen;
    let failed = false;
    const fail = (e: unknown) => {
      if (mine !== gen || failed) return;
      failed = true;
      if (!stopped && TRANSIENT.has(errorCode(e))) again();
      else sink.error?.(e);
    };
    stop = ws().subscribe<T>(payload as any, {
      next: (r) => {
        if (mine !== gen) return;
        if (r.data) {
          retries = 0;
          sink.next(r.data as T);
        } else if (r.errors) fail(r.errors);
      },
      error: fail,
      complete: () => {
        if (mine !== gen || failed || stopped) return;
        if (endless) again();
        else sink.complete?.();
      },
    });
  };
  start();
  return () => {
    stopped = true;
    clearTimeout(timer);
    socketCount--;
    stop();
  };
}

/** One operation (a mutation) over the socket; resent after a reconnect until answered. */
export function overSocket<T = any>(q: string, variables: object): Promise<T> {
  return new Promise((resolve, reject) => {
    let done = false;
    const stop = ws().subscribe<T>({ query: q, variables: variables as any }, {
      next: (r) => {
        done = true;
        if (r.errors?.length) reject(r.errors);
        else resolve(r.data as T);
      },
      error: (e) => reject(e),
      complete: () => {
        if (!done) reject(new Error('no answer'));
        stop();
      },
    });
  });
}
