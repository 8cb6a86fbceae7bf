import { StrictMode, useEffect, useState, useSyncExternalStore } from 'react';
import { createRoot } from 'react-dom/client';
import { currentUser, subscribe } from './auth';
import { AuthPage } from './pages/Auth';
import { SessionsPage } from './pages/Sessions';
import { JoinPage } from './pages/Join';
import { SessionPage } from './pages/Session';
import './styles.css';

function usePath() {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const f = () => setPath(location.pathname);
    addEventListener('popstate', f);
    return () => removeEventListener('popstate', f);
  }, []);
  return path;
}

function App() {
  const path = usePath();
  const user = useSyncExternalStore(subscribe, currentUser);
  if (!user) return <AuthPage signUp={path === '/signup'} />;
  let m: RegExpMatchArray | null;
  if ((m = path.match(/^\/s\/([^/]+)$/))) return <SessionPage key={m[1]} sessionId={decodeURIComponent(m[1])} />;
  if ((m = path.match(/^\/join\/([^/]+)$/))) return <JoinPage code={decodeURIComponent(m[1])} />;
  return <SessionsPage />;
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
