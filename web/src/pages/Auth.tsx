import { useState, type FormEvent } from 'react';
import { mutate, errorMessage } from '../api';
import { signedIn } from '../auth';
import { navigate } from '../router';

const PAYLOAD = 'accessToken refreshToken expiresAt user { id name email }';

/** Sign in or create an account; the page asked for (an invite link) stays in the address bar. */
export function AuthPage({ signUp }: { signUp: boolean }) {
  const [mode, setMode] = useState<'in' | 'up'>(signUp ? 'up' : 'in');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [name, setName] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      const d = mode === 'up'
        ? (await mutate(`mutation($i: RegisterInput!) { register(input: $i) { ${PAYLOAD} } }`, { i: { email, password, name } })).register
        : (await mutate(`mutation($i: LoginInput!) { login(input: $i) { ${PAYLOAD} } }`, { i: { email, password } })).login;
      if (location.pathname === '/signin' || location.pathname === '/signup') navigate('/', true);
      signedIn(d);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  }

  const other = (m: 'in' | 'up') => (e: React.MouseEvent) => {
    e.preventDefault();
    setMode(m);
    setError('');
  };

  return (
    <main className="auth">
      <h1>CodeCrafter</h1>
      <form onSubmit={submit} aria-label={mode === 'up' ? 'Create account' : 'Sign in'}>
        <h2>{mode === 'up' ? 'Create an account' : 'Sign in'}</h2>
        {mode === 'up' && (
          <label>Name<input value={name} onChange={(e) => setName(e.target.value)} required autoComplete="name" /></label>
        )}
        <label>Email<input type="email" value={email} onChange={(e) => setEmail(e.target.value)} required autoComplete="email" /></label>
        <label>Password<input type="password" value={password} onChange={(e) => setPassword(e.target.value)} required minLength={mode === 'up' ? 10 : undefined} autoComplete={mode === 'up' ? 'new-password' : 'current-password'} /></label>
        {error && <p role="alert" className="error">{error}</p>}
        <button type="submit" disabled={busy}>{mode === 'up' ? 'Create account' : 'Sign in'}</button>
        <p>
          {mode === 'up'
            ? <>Have an account? <a href="/signin" onClick={other('in')}>Sign in instead</a></>
            : <>New here? <a href="/signup" onClick={other('up')}>Sign up</a></>}
        </p>
      </form>
    </main>
  );
}
