// End to end with the GraphQL clients an outside program would use, from
// Node on a real `codecrafter serve`: Apollo Client over HTTP and over
// graphql-ws (the graphql-transport-ws protocol), and the legacy
// subscriptions-transport-ws client (the graphql-ws protocol). Ann owns
// a session through Apollo, Bob takes part through the legacy client.
// Run by `make test-web`; alone: `node e2e/clients.e2e.mjs` in web/
// (after `make build`; BASE_URL as for session.e2e.mjs).
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import { createClient } from 'graphql-ws';
import transportWS from 'subscriptions-transport-ws';
import WebSocket from 'ws';
import { startServer } from './serve.mjs';

const T = 30_000; // the longest any one step may wait (a cold sandbox included)
const log = (...a) => console.log(`[clients ${new Date().toISOString().slice(11, 23)}]`, ...a);
const wsURL = (base) => base.replace(/^http/, 'ws') + '/graphql';
const errText = (e) => `${e?.message ?? ''} ${JSON.stringify(e?.errors ?? e)}`; // Apollo's errors hold a list, the legacy client's are one

/** Apollo Client as a user: queries and mutations over HTTP, subscriptions over graphql-ws. */
function apollo(base, token, on = {}) {
  const http = new HttpLink({ uri: `${base}/graphql`, headers: token ? { Authorization: `Bearer ${token}` } : {} });
  if (!token) return new ApolloClient({ link: http, cache: new InMemoryCache() });
  const ws = createClient({ url: wsURL(base), webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0, on });
  const link = ApolloLink.split(({ query }) => {
    const d = getMainDefinition(query);
    return d.kind === 'OperationDefinition' && d.operation === 'subscription';
  }, new GraphQLWsLink(ws), http);
  const client = new ApolloClient({ link, cache: new InMemoryCache(), defaultOptions: { query: { fetchPolicy: 'no-cache' } } });
  client.ws = ws;
  return client;
}

/**
 * The events of one subscription, kept: until(pred) resolves with the
 * first event, past or future, that pred accepts; ended resolves with the
 * error that ended it, or null when it completed.
 */
function feed(name) {
  const events = [];
  const waiters = new Set();
  let end;
  const f = {
    name,
    events,
    ended: new Promise((r) => (end = r)),
    push(e) {
      events.push(e);
      for (const w of waiters) if (w.pred(e)) { waiters.delete(w); w.ok(e); }
    },
    until(what, pred) {
      const hit = events.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((ok, fail) => {
        const w = { pred, ok };
        waiters.add(w);
        setTimeout(() => { if (waiters.delete(w)) fail(new Error(`${name}: ${what}: not within ${T / 1000} s; saw ${JSON.stringify(events.slice(-5))}`)); }, T);
      });
    },
  };
  f.observer = { next: (e) => f.push(e), error: (e) => end(e ?? new Error('error without a reason')), complete: () => end(null) };
  return f;
}

/** Apollo's subscribe: results carry data or an error. */
function apolloFeed(client, name, query, variables) {
  const f = feed(name);
  const sub = client.subscribe({ query: gql(query), variables }).subscribe({
    next: (r) => (r.error ? f.observer.error(r.error) : f.observer.next(r.data)),
    error: f.observer.error,
    complete: f.observer.complete,
  });
  f.stop = () => sub.unsubscribe();
  return f;
}

/** The legacy client's request: an observable of { data } or { errors }. */
function legacyFeed(client, name, query, variables) {
  const f = feed(name);
  const sub = client.request({ query, variables }).subscribe({
    next: (r) => (r.errors ? f.observer.error(r) : f.observer.next(r.data)),
    error: f.observer.error,
    complete: f.observer.complete,
  });
  f.stop = () => sub.unsubscribe();
  return f;
}

/** Resolves with what p gives, or fails after T. */
function within(what, p) {
  let timer;
  return Promise.race([p, new Promise((_, fail) => (timer = setTimeout(() => fail(new Error(`${what}: not within ${T / 1000} s`)), T)))])
    .finally(() => clearTimeout(timer));
}

/** Calls act every 500 ms until live(); for a subscription with no ack. */
async function untilLive(what, act, live) {
  const deadline = Date.now() + T;
  while (!live()) {
    if (Date.now() > deadline) throw new Error(`${what}: not live within ${T / 1000} s`);
    await act();
    const next = Date.now() + 500;
    while (!live() && Date.now() < next) await new Promise((r) => setTimeout(r, 20));
  }
}

const REGISTER = 'mutation($i: RegisterInput!) { register(input: $i) { accessToken refreshToken user { id name } } }';
const EXECUTE = 'mutation($s: ID!, $c: String!) { execute(input: {language: "python", code: $c, sessionId: $s}) { id status queuePosition } }';
const SESSION_EXECUTIONS = 'subscription($s: ID!) { sessionExecutions(sessionId: $s) { id status stdout queuePosition estimatedStartMs } }';
const MESSAGES = 'subscription($s: ID!) { messageAdded(sessionId: $s) { body author { name } } }';

async function main() {
  const server = await startServer(log);
  const closers = [server.stop];
  try {
    await steps(server.base, closers);
  } finally {
    for (const c of closers.reverse()) await c();
  }
}

async function steps(base, closers) {
  const stamp = Date.now();
  const anon = apollo(base);
  const register = async (name) => (await anon.mutate({ mutation: gql(REGISTER), variables: { i: { name, email: `${name}-${stamp}@example.com`, password: 'correct horse battery' } } })).data.register;

  log('Ann (Apollo Client) and Bob (subscriptions-transport-ws) sign up; Ann creates a session, Bob joins');
  const annAuth = await register('ann');
  const bobAuth = await register('bob');
  let annClosed;
  const annSocketClosed = new Promise((r) => (annClosed = r));
  const ann = apollo(base, annAuth.accessToken, { closed: (e) => annClosed(e) });
  closers.push(() => ann.ws.dispose());
  const bobHTTP = apollo(base, bobAuth.accessToken);
  closers.push(() => bobHTTP.ws.dispose());
  const { data: { createSession: s } } = await ann.mutate({
    mutation: gql('mutation { createSession(input: {title: "Clients", language: "python"}) { id inviteCode } }'),
  });
  await bobHTTP.mutate({ mutation: gql('mutation($c: String!) { joinSession(inviteCode: $c) { id } }'), variables: { c: s.inviteCode } });

  const bob = new transportWS.SubscriptionClient(wsURL(base), { connectionParams: { authorization: `Bearer ${bobAuth.accessToken}` }, reconnect: false }, WebSocket);
  closers.push(() => bob.close());
  const bobRuns = legacyFeed(bob, 'bob sessionExecutions', SESSION_EXECUTIONS, { s: s.id });
  const bobChat = legacyFeed(bob, 'bob messageAdded', MESSAGES, { s: s.id });
  const annRuns = apolloFeed(ann, 'ann sessionExecutions', SESSION_EXECUTIONS, { s: s.id });
  const annChat = apolloFeed(ann, 'ann messageAdded', MESSAGES, { s: s.id });
  const execute = async (code) => (await ann.mutate({ mutation: gql(EXECUTE), variables: { s: s.id, c: code } })).data.execute;
  const say = (client, body) => client.mutate({ mutation: gql('mutation($s: ID!, $b: String!) { sendMessage(sessionId: $s, body: $b) { id } }'), variables: { s: s.id, b: body } });

  log('every subscription is live: a chat line and a run reach both');
  await untilLive('chat', () => say(ann, 'ping'), () => bobChat.events.length > 0 && annChat.events.length > 0);
  await untilLive('runs', () => execute('print("warm")'), () => bobRuns.events.length > 0 && annRuns.events.length > 0);

  log('three runs at once on one worker slot: the queued ones show their place, everyone sees every run end');
  const slow = await execute('import time\ntime.sleep(1.5)\nprint("a")');
  const mid = await execute('print("b")');
  const last = await execute('print("c")');
  if (last.status !== 'QUEUED' || !(last.queuePosition >= 1)) throw new Error(`third run: ${JSON.stringify(last)}, want QUEUED at position 1 or more`);
  const bobOut = legacyFeed(bob, 'bob executionOutput', 'subscription($e: ID!) { executionOutput(executionId: $e) { seq stream data status queuePosition estimatedStartMs } }', { e: last.id });
  const queued = await bobRuns.until('the third run QUEUED with its place', (e) => e.sessionExecutions.id === last.id && e.sessionExecutions.status === 'QUEUED');
  if (!(queued.sessionExecutions.queuePosition >= 1) || queued.sessionExecutions.estimatedStartMs == null) {
    throw new Error(`bob saw the third run queued as ${JSON.stringify(queued)}, want a place of 1 or more and an estimate`);
  }
  for (const [run, out] of [[slow, 'a\n'], [mid, 'b\n'], [last, 'c\n']]) {
    for (const f of [annRuns, bobRuns]) {
      const e = await f.until(`run ${run.id} SUCCEEDED`, (e) => e.sessionExecutions.id === run.id && e.sessionExecutions.status === 'SUCCEEDED');
      if (e.sessionExecutions.stdout !== out) throw new Error(`${f.name}: run ${run.id} stdout ${JSON.stringify(e.sessionExecutions.stdout)}, want ${JSON.stringify(out)}`);
    }
  }
  // executionOutput replays from the first event and completes after the final status.
  if ((await within('bob executionOutput completes', bobOut.ended)) !== null) throw new Error('bob executionOutput ended with an error');
  const outs = bobOut.events.map((e) => e.executionOutput);
  const statuses = outs.filter((o) => o.data == null).map((o) => o.status);
  const stdout = outs.filter((o) => o.stream === 'STDOUT').map((o) => o.data).join('');
  if (statuses[0] !== 'QUEUED' || outs[0].queuePosition == null || statuses.at(-1) !== 'SUCCEEDED' || stdout !== 'c\n') {
    throw new Error(`bob executionOutput: statuses ${statuses}, stdout ${JSON.stringify(stdout)}, first ${JSON.stringify(outs[0])}`);
  }
  // In order; a QUEUED status comes again (same seq) when only its place changed.
  if (outs.some((o, i) => i > 0 && (o.seq < outs[i - 1].seq || (o.seq === outs[i - 1].seq && o.status !== 'QUEUED')))) {
    throw new Error(`executionOutput out of order: ${JSON.stringify(outs)}`);
  }

  log('chat both ways');
  await say(bobHTTP, 'hi from bob');
  await annChat.until('bob\'s line', (e) => e.messageAdded.body === 'hi from bob' && e.messageAdded.author.name === 'bob');
  await bobChat.until('his own line', (e) => e.messageAdded.body === 'hi from bob');

  log('Ann removes Bob: his legacy subscriptions end with NOT_FOUND at once; a new one is refused');
  await ann.mutate({ mutation: gql('mutation($s: ID!, $u: ID!) { removeParticipant(sessionId: $s, userId: $u) }'), variables: { s: s.id, u: bobAuth.user.id } });
  for (const f of [bobRuns, bobChat]) {
    const err = await within(`${f.name} ends`, f.ended);
    if (!err || !errText(err).includes('NOT_FOUND')) throw new Error(`${f.name} ended with ${errText(err)}, want NOT_FOUND`);
  }
  const again = legacyFeed(bob, 'bob messageAdded again', MESSAGES, { s: s.id });
  const refused = await within('a new subscription of bob\'s is refused', again.ended);
  if (!refused || !/NOT_FOUND|FORBIDDEN/.test(errText(refused))) throw new Error(`bob's new subscription ended with ${errText(refused)}`);
  await say(ann, 'after');
  await annChat.until('ann still receives', (e) => e.messageAdded.body === 'after');
  if (bobChat.events.some((e) => e.messageAdded.body === 'after') || again.events.length) throw new Error('bob received after his removal');

  log('Ann logs out: her graphql-ws socket closes with 4403 and her subscriptions end');
  await ann.mutate({ mutation: gql('mutation($t: String!) { logout(refreshToken: $t) }'), variables: { t: annAuth.refreshToken } });
  const closed = await within('ann\'s socket closes', annSocketClosed);
  if (closed.code !== 4403) throw new Error(`ann's socket closed with ${closed.code} ${closed.reason}, want 4403`);
  for (const f of [annRuns, annChat]) {
    if ((await within(`${f.name} ends`, f.ended)) === null) throw new Error(`${f.name} completed, want an error`);
  }
  log('PASS');
}

try {
  await main();
  process.exit(0);
} catch (e) {
  console.error('clients e2e FAILED:', e.message);
  process.exit(1);
}
