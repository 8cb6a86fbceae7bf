// Tokens: kept in localStorage (so a reload or a second tab stays signed
// in) and refreshed a minute before the access token expires. A refresh
// the server refuses signs out (back to sign-in); a network failure is
// retried, since the refresh token may still be good.
export interface Me { id: string; name: string; email?: string | null }
export interface Tokens { accessToken: string; refreshToken: string; expiresAt: number; user: Me }

const KEY = 'codecrafter.auth';
const listeners = new Set<() => void>();
let tokens: Tokens | null = read();
let refreshing: Promise<void> | null = null;
let timer: ReturnType<typeof setTimeout> | undefined;

function read(): Tokens | null {
  try {
    return JSON.parse(localStorage.getItem(KEY) ?? 'null');
  } catch {
    return null;
  }
}

function set(t: Tokens | null) {
  tokens = t;
  if (t) localStorage.setItem(KEY, JSON.stringify(t));
  else localStorage.removeItem(KEY);
  schedule();
  listeners.forEach((l) => l());
}

function schedule() {
  clearTimeout(timer);
  if (!tokens) return;
  const wait = Math.max(0, tokens.expiresAt - Date.now() - 60_000);
  timer = setTimeout(() => void refresh().catch(() => schedule()), Math.min(wait, 2 ** 31 - 1));
}

// Another tab refreshed (refresh tokens work once): take its pair.
window.addEventListener('storage', (e) => {
  if (e.key === KEY) {
    tokens = read();
    schedule();
    listeners.forEach((l) => l());
  }
});

export const currentUser = () => tokens?.user ?? null;
export const subscribe = (l: () => void) => (listeners.add(l), () => void listeners.delete(l));

export function signedIn(p: { accessToken: string; refreshToken: string; expiresAt: string; user: Me }) {
  set({ accessToken: p.accessToken, refreshToken: p.refreshToken, expiresAt: Date.parse(p.expiresAt), user: p.user });
}

export function signOut() {
  const t = tokens;
  set(null);
  if (t) void post('mutation($r: String!) { logout(refreshToken: $r) }', { r: t.refreshToken }).catch(() => {});
}

/** A current access token (refreshed first when about to expire), or null when signed out. */
export async function accessToken(): Promise<string | null> {
  if (tokens && tokens.expiresAt - Date.now() < 30_000) await refresh();
  return tokens?.accessToken ?? null;
}

/** Exchanges the refresh token; one exchange at a time. */
export function refresh(): Promise<void> {
  if (!refreshing) {
    refreshing = doRefresh().finally(() => (refreshing = null));
  }
  return refreshing;
}

async function doRefresh() {
  const t = tokens;
  if (!t) return;
  const res = await post(
    'mutation($r: String!) { refreshToken(refreshToken: $r) { accessToken refreshToken expiresAt user { id name email } } }',
    { r: t.refreshToken },
  ); // throws on a network failure: try again later
  if (tokens?.refreshToken !== t.refreshToken) return; // another tab got there first
  if (res.data?.refreshToken) signedIn(res.data.refreshToken);
  else set(null); // refused: sign in again
}

async function post(query: string, variables: object) {
  const r = await fetch('/graphql', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  if (r.status >= 500) throw new Error(`server answered ${r.status}`);
  return r.json();
}

schedule();
