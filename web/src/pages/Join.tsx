import { useEffect, useState } from 'react';
import { mutate, errorMessage } from '../api';
import { navigate } from '../router';

/** Opening an invite link joins the session, then shows it. */
export function JoinPage({ code }: { code: string }) {
  const [error, setError] = useState('');
  useEffect(() => {
    let live = true;
    mutate('mutation($c: String!) { joinSession(inviteCode: $c) { id } }', { c: code })
      .then((d) => live && navigate(`/s/${d.joinSession.id}`, true))
      .catch((err) => live && setError(errorMessage(err)));
    return () => void (live = false);
  }, [code]);
  return (
    <main className="page">
      {error ? <><p role="alert" className="error">Could not join: {error}</p><a href="/" onClick={(e) => { e.preventDefault(); navigate('/'); }}>My sessions</a></> : <p>Joining…</p>}
    </main>
  );
}
