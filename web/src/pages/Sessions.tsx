import { useEffect, useState, type FormEvent } from 'react';
import { query, mutate, errorMessage } from '../api';
import { currentUser, signOut } from '../auth';
import { navigate } from '../router';

export interface Runtime { language: string; name: string; version: string }
interface Row { id: string; title: string; language: string; updatedAt: string; owner: { id: string; name: string } }

export function Header() {
  const me = currentUser();
  return (
    <header className="top">
      <a href="/" className="brand" onClick={(e) => { e.preventDefault(); navigate('/'); }}>CodeCrafter</a>
      <span className="me">{me?.name}</span>
      <button type="button" onClick={() => { signOut(); navigate('/'); }}>Sign out</button>
    </header>
  );
}

/** My sessions, newest first, and a new one. */
export function SessionsPage() {
  const [rows, setRows] = useState<Row[] | null>(null);
  const [langs, setLangs] = useState<Runtime[]>([]);
  const [title, setTitle] = useState('');
  const [language, setLanguage] = useState('python');
  const [error, setError] = useState('');

  useEffect(() => {
    query('{ mySessions { id title language updatedAt owner { id name } } languages { language name version } }')
      .then((d) => { setRows(d.mySessions); setLangs(d.languages); })
      .catch((err) => setError(errorMessage(err)));
  }, []);

  async function create(e: FormEvent) {
    e.preventDefault();
    try {
      const d = await mutate('mutation($i: CreateSessionInput!) { createSession(input: $i) { id } }', {
        i: { title: title.trim() || 'Untitled', language },
      });
      navigate(`/s/${d.createSession.id}`);
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  return (
    <>
      <Header />
      <main className="page">
        <form className="new-session" onSubmit={create}>
          <label>Title<input value={title} onChange={(e) => setTitle(e.target.value)} placeholder="Pairing" /></label>
          <label>Language
            <select value={language} onChange={(e) => setLanguage(e.target.value)}>
              {(langs.length ? langs : [{ language: 'python', name: 'Python', version: '' }]).map((l) => (
                <option key={l.language} value={l.language}>{l.name}</option>
              ))}
            </select>
          </label>
          <button type="submit">New session</button>
        </form>
        {error && <p role="alert" className="error">{error}</p>}
        <h2>My sessions</h2>
        {rows === null ? <p>Loading…</p> : rows.length === 0 ? <p>None yet.</p> : (
          <ul className="sessions" aria-label="My sessions">
            {rows.map((s) => (
              <li key={s.id}>
                <a href={`/s/${s.id}`} onClick={(e) => { e.preventDefault(); navigate(`/s/${s.id}`); }}>{s.title}</a>
                <span className="muted"> {s.language} · {s.owner.name} · {new Date(s.updatedAt).toLocaleString()}</span>
              </li>
            ))}
          </ul>
        )}
      </main>
    </>
  );
}
