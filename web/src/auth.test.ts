import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

// auth.ts keeps tokens in localStorage and talks to /graphql with fetch:
// both stubbed, and the clock faked, so a 15-minute token expires at once.
const store = new Map<string, string>();
const calls: { query: string; variables: Record<string, string> }[] = [];
let answer: () => object;

beforeEach(() => {
  vi.useFakeTimers({ now: Date.parse('2026-01-01T00:00:00Z') });
  store.clear();
  calls.length = 0;
  vi.stubGlobal('window', { addEventListener: () => {} });
  vi.stubGlobal('localStorage', {
    getItem: (k: string) => store.get(k) ?? null,
    setItem: (k: string, v: string) => void store.set(k, v),
    removeItem: (k: string) => void store.delete(k),
  });
  vi.stubGlobal('fetch', async (_url: string, init: { body: string }) => {
    calls.push(JSON.parse(init.body));
    return { status: 200, json: async () => answer() };
  });
  vi.resetModules();
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

const pair = (n: number, minutes = 15) => ({
  accessToken: `access-${n}`, refreshToken: `refresh-${n}`,
  expiresAt: new Date(Date.now() + minutes * 60_000).toISOString(), user: { id: 'u1', name: 'Ann' },
});

describe('auth', () => {
  it('refreshes a minute before the access token expires, and keeps the new pair', async () => {
    const auth = await import('./auth');
    auth.signedIn(pair(1));
    answer = () => ({ data: { refreshToken: pair(2) } });
    await vi.advanceTimersByTimeAsync(13 * 60_000);
    expect(calls).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(60_000 + 1);
    expect(calls).toHaveLength(1);
    expect(calls[0].variables).toEqual({ r: 'refresh-1' });
    expect(await auth.accessToken()).toBe('access-2');
    expect(JSON.parse(store.get('codecrafter.auth')!).refreshToken).toBe('refresh-2'); // a reload keeps it
  });

  it('signs out when the server refuses the refresh', async () => {
    const auth = await import('./auth');
    auth.signedIn(pair(1));
    let notified = 0;
    auth.subscribe(() => notified++);
    answer = () => ({ errors: [{ message: 'refresh token reused', extensions: { code: 'UNAUTHENTICATED' } }], data: null });
    await vi.advanceTimersByTimeAsync(15 * 60_000);
    expect(auth.currentUser()).toBeNull();
    expect(notified).toBeGreaterThan(0); // the app shows sign-in
    expect(store.has('codecrafter.auth')).toBe(false);
  });

  it('keeps the tokens when the network fails, and tries again', async () => {
    const auth = await import('./auth');
    auth.signedIn(pair(1, 0.5)); // 30 s left: due at once
    vi.stubGlobal('fetch', async () => { throw new TypeError('Failed to fetch'); });
    await expect(auth.refresh()).rejects.toThrow('Failed to fetch');
    expect(auth.currentUser()).not.toBeNull();
  });

  it('refreshes once for many callers at a time', async () => {
    const auth = await import('./auth');
    auth.signedIn(pair(1, 0.25)); // 15 s left: accessToken refreshes first
    answer = () => ({ data: { refreshToken: pair(2) } });
    const tokens = await Promise.all([auth.accessToken(), auth.accessToken(), auth.accessToken()]);
    expect(tokens).toEqual(['access-2', 'access-2', 'access-2']);
    expect(calls.filter((c) => c.query.includes('refreshToken('))).toHaveLength(1);
  });
});
