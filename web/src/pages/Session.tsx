import { useCallback, useEffect, useRef, useState, useSyncExternalStore, type FormEvent } from 'react';
import { EditorView } from '@codemirror/view';
import { query, mutate, subscribe, overSocket, errorCode, errorMessage, onSocketState, socketState } from '../api';
import { currentUser, type Me } from '../auth';
import { navigate } from '../router';
import { Header, type Runtime } from './Sessions';
import { createEditor, languageConf, languageSupport, readOnly, readOnlyConf, setRemote, colour } from '../editor';
import { OTClient } from '../otclient';
import { TextOp, cpToUtf16, fromUtf16Changes, toUtf16Changes, utf16ToCp } from '../ot';
import { History } from './History';

type Role = 'OWNER' | 'EDITOR' | 'VIEWER';
interface User { id: string; name: string }
interface Participant { user: User; role: Role; online: boolean }
export interface SessionData {
  id: string; title: string; language: string; code: string; revision: number;
  inviteCode: string | null; inviteEnabled: boolean | null; owner: User; participants: Participant[];
}

const SESSION_FIELDS = 'id title language inviteCode inviteEnabled owner { id name } participants { user { id name } role online }';

/** The session page: loads the session, then the live view. */
export function SessionPage({ sessionId }: { sessionId: string }) {
  const [data, setData] = useState<{ session: SessionData; languages: Runtime[] } | null>(null);
  const [error, setError] = useState('');
  const [epoch, setEpoch] = useState(0); // a resync remounts the live view
  useEffect(() => {
    query(`query($id: ID!) { session(id: $id) { ${SESSION_FIELDS} code revision } languages { language name version } }`, { id: sessionId })
      .then((d) => (d.session ? setData({ session: d.session, languages: d.languages }) : setError('This session does not exist, or you are not in it.')))
      .catch((err) => setError(errorMessage(err)));
  }, [sessionId, epoch]);
  return (
    <>
      <Header />
      {error ? <main className="page"><p role="alert" className="error">{error}</p></main>
        : !data ? <main className="page"><p>Loading…</p></main>
        : <SessionView key={epoch} initial={data.session} languages={data.languages} resync={() => { setData(null); setEpoch((e) => e + 1); }} />}
    </>
  );
}

function useSocketState() {
  return useSyncExternalStore(onSocketState, socketState);
}

function SessionView({ initial, languages, resync }: { initial: SessionData; languages: Runtime[]; resync: () => void }) {
  const me = currentUser() as Me;
  const sessionId = initial.id;
  const [session, setSession] = useState(initial);
  const [online, setOnline] = useState<Record<string, boolean>>(() => Object.fromEntries(initial.participants.map((p) => [p.user.id, p.online])));
  const [ended, setEnded] = useState('');
  const conn = useSocketState();
  const role = session.participants.find((p) => p.user.id === me.id)?.role ?? 'VIEWER';
  const canEdit = role !== 'VIEWER';
  const isOwner = role === 'OWNER';

  // Local changes so far: a read that began before the latest one may
  // predate it, and would undo it on screen (the next read is seconds away).
  const changes = useRef(0);
  const change = useCallback((c: Partial<SessionData>) => {
    changes.current++;
    setSession((s) => ({ ...s, ...c }));
  }, []);
  const reload = useCallback(() => {
    const at = changes.current;
    query(`query($id: ID!) { session(id: $id) { ${SESSION_FIELDS} } }`, { id: sessionId })
      .then((d) => {
        if (!d.session) setEnded('You are no longer in this session.');
        else if (changes.current === at) setSession((s) => ({ ...s, ...d.session }));
      })
      .catch(() => {});
  }, [sessionId]);

  // Roles, titles and the participants list have no subscription: read them
  // again every few seconds and whenever someone comes or goes.
  useEffect(() => {
    const t = setInterval(reload, 5000);
    return () => clearInterval(t);
  }, [reload]);

  useEffect(() => subscribe<{ presence: { user: User; online: boolean } }>(
    'subscription($s: ID!) { presence(sessionId: $s) { user { id name } online } }',
    () => ({ s: sessionId }),
    {
      next: (d) => {
        setOnline((o) => ({ ...o, [d.presence.user.id]: d.presence.online }));
        if (d.presence.online) reload();
      },
      error: (e) => errorCode(e) === 'NOT_FOUND' && setEnded('You are no longer in this session.'),
    },
  ), [sessionId, reload]);

  const editor = useCollabEditor(session, me, canEdit, resync);

  async function setLanguage(language: string) {
    change({ language });
    try {
      await mutate('mutation($id: ID!, $i: UpdateSessionInput!) { updateSession(id: $id, input: $i) { id language } }', { id: sessionId, i: { language } });
    } catch (err) {
      alert(errorMessage(err));
    }
  }

  if (ended) {
    return <main className="page"><p role="alert">{ended}</p><a href="/" onClick={(e) => { e.preventDefault(); navigate('/'); }}>My sessions</a></main>;
  }

  return (
    <main className="session">
      {conn === 'reconnecting' && <div role="status" className="banner">Reconnecting…</div>}
      <div className="session-head">
        <h1>{session.title}</h1>
        <label>Language
          <select value={session.language} disabled={!canEdit} onChange={(e) => void setLanguage(e.target.value)}>
            {languages.map((l) => <option key={l.language} value={l.language}>{l.name}</option>)}
          </select>
        </label>
        <span className="muted">you are {role.toLowerCase()} · revision <span data-testid="revision">{editor.revision}</span></span>
      </div>
      {isOwner && <Invite session={session} onChange={change} />}
      <div className="columns">
        <div className="main-col">
          <div className="editor" ref={editor.hostRef} />
          <Runs sessionId={sessionId} language={session.language} canRun={canEdit} waitSynced={editor.waitSynced} />
          <History sessionId={sessionId} revision={editor.revision} />
        </div>
        <aside className="side-col">
          <Participants session={session} online={online} me={me} isOwner={isOwner} reload={reload} />
          <Chat sessionId={sessionId} me={me} />
        </aside>
      </div>
    </main>
  );
}

/** The shared editor: CodeMirror bound to editCode/codeEdited through OTClient, and cursors through setSelection/selections. */
function useCollabEditor(session: SessionData, me: Me, canEdit: boolean, resync: () => void) {
  const hostRef = useRef<HTMLDivElement>(null);
  const viewRef = useRef<EditorView | null>(null);
  const clientRef = useRef<OTClient | null>(null);
  const [revision, setRevision] = useState(session.revision);
  const syncWaiters = useRef<(() => void)[]>([]);
  const sessionId = session.id;

  useEffect(() => {
    const host = hostRef.current!;
    const clientId = `web-${crypto.randomUUID()}`;
    let remote = false; // set while we apply someone else's edit
    let stopped = false;
    const selections = new Map<string, { name: string; revision: number; ranges: { anchor: number; head: number }[] }>();
    let selTimer: ReturnType<typeof setTimeout> | undefined;
    let selDirty = false;

    const placeSelections = () => {
      const view = viewRef.current, client = clientRef.current;
      if (!view || !client) return;
      const doc = view.state.doc.toString();
      const effects = [];
      for (const [userId, s] of selections) {
        if (s.revision > client.revision) continue; // wait until we have those edits
        selections.delete(userId);
        const map = (cp: number) => Math.min(cpToUtf16(doc, client.localIndex(cp)), doc.length);
        effects.push(setRemote.of({ userId, name: s.name, ranges: s.ranges.map((r) => ({ anchor: map(r.anchor), head: map(r.head) })) }));
      }
      if (effects.length) view.dispatch({ effects });
    };

    const sendSelection = () => {
      const view = viewRef.current, client = clientRef.current;
      if (!view || !client || stopped) return;
      if (!client.synchronized) { selDirty = true; return; } // positions must be at a revision the server has
      selDirty = false;
      const doc = view.state.doc.toString();
      const ranges = view.state.selection.ranges.map((r) => ({ anchor: utf16ToCp(doc, r.anchor), head: utf16ToCp(doc, r.head) }));
      overSocket('mutation($s: ID!, $r: Int!, $g: [SelectionRangeInput!]!) { setSelection(sessionId: $s, revision: $r, ranges: $g) { revision } }',
        { s: sessionId, r: client.revision, g: ranges }).catch(() => {});
    };
    const selectionChanged = () => {
      clearTimeout(selTimer);
      selTimer = setTimeout(sendSelection, 120);
    };

    let lastSend = 0;
    const client = new OTClient(session.revision, me.id, {
      send: (base, op, seq) => {
        const vars = { s: sessionId, i: { baseRevision: base, ops: op.toInput(), clientId, seq } };
        const attempt = (n: number) => {
          if (stopped) return;
          overSocket<{ editCode: { revision: number } }>(
            'mutation($s: ID!, $i: EditInput!) { editCode(sessionId: $s, input: $i) { revision } }', vars,
          ).then((d) => client.acked(seq, d.editCode.revision), (err) => {
            const code = errorCode(err);
            if (['RATE_LIMITED', 'UNAVAILABLE', 'INTERNAL', 'NETWORK'].includes(code)) {
              // The same clientId and seq: applied at most once, however often sent.
              setTimeout(() => attempt(n + 1), Math.min(5000, 200 * 2 ** n));
            } else if (!stopped) {
              alert(`Your edit was refused (${errorMessage(err)}); the editor reloads the session's code.`);
              resync();
            }
          });
        };
        // At most 25 edits a second (the buffer composes meanwhile): the server
        // closes a socket that sends more than 50 messages a second.
        const wait = Math.max(0, lastSend + 40 - Date.now());
        lastSend = Date.now() + wait;
        setTimeout(() => attempt(0), wait);
      },
      apply: (op) => {
        const view = viewRef.current!;
        remote = true;
        try {
          view.dispatch({ changes: toUtf16Changes(view.state.doc.toString(), op) });
        } finally {
          remote = false;
        }
      },
      changed: () => {
        setRevision(client.revision);
        placeSelections();
        if (client.synchronized) {
          if (selDirty) sendSelection();
          syncWaiters.current.splice(0).forEach((w) => w());
        }
      },
    });
    clientRef.current = client;

    const view = createEditor(host, session.code, session.language, !canEdit, EditorView.updateListener.of((u) => {
      if (u.docChanged && !remote) {
        for (const tr of u.transactions) {
          if (!tr.docChanged) continue;
          const changes: { from: number; to: number; insert: string }[] = [];
          tr.changes.iterChanges((fromA, toA, _fb, _tb, ins) => changes.push({ from: fromA, to: toA, insert: ins.toString() }));
          client.local(fromUtf16Changes(tr.startState.doc.toString(), changes));
        }
      }
      if (u.selectionSet && u.view.hasFocus) selectionChanged();
    }));
    viewRef.current = view;

    const stopEdits = subscribe<{ codeEdited: { revision: number; ops: { retain?: number; insert?: string; delete?: number }[]; author: { id: string } } }>(
      'subscription($s: ID!, $r: Int) { codeEdited(sessionId: $s, sinceRevision: $r) { revision ops { retain insert delete } author { id } } }',
      () => ({ s: sessionId, r: client.revision }), // on every (re)subscription: what came after what we have
      {
        next: (d) => client.received({ revision: d.codeEdited.revision, op: TextOp.fromInput(d.codeEdited.ops), authorId: d.codeEdited.author.id }),
      },
    );
    const stopSel = subscribe<{ selections: { user: User; revision: number; ranges: { anchor: number; head: number }[] } }>(
      'subscription($s: ID!) { selections(sessionId: $s) { user { id name } revision ranges { anchor head } } }',
      () => ({ s: sessionId }),
      {
        next: ({ selections: s }) => {
          if (s.user.id === me.id) return;
          if (!s.ranges.length) {
            selections.delete(s.user.id);
            viewRef.current?.dispatch({ effects: setRemote.of({ userId: s.user.id, name: s.user.name, ranges: [] }) });
            return;
          }
          selections.set(s.user.id, { name: s.user.name, revision: s.revision, ranges: s.ranges });
          placeSelections();
        },
      },
    );
    return () => {
      stopped = true;
      clearTimeout(selTimer);
      stopEdits();
      stopSel();
      view.destroy();
      viewRef.current = null;
      clientRef.current = null;
    };
    // The editor lives as long as the view; language and role changes are reconfigured below.
  }, [sessionId]);

  useEffect(() => {
    viewRef.current?.dispatch({ effects: languageConf.reconfigure(languageSupport(session.language)) });
  }, [session.language]);
  useEffect(() => {
    viewRef.current?.dispatch({ effects: readOnlyConf.reconfigure(readOnly(!canEdit)) });
  }, [canEdit]);

  /** Resolves once every local edit is acknowledged (a run then runs them). */
  const waitSynced = useCallback(() => new Promise<void>((resolve) => {
    const c = clientRef.current;
    if (!c || c.synchronized) resolve();
    else syncWaiters.current.push(resolve);
  }), []);

  return { hostRef, revision, waitSynced };
}

function Invite({ session, onChange }: { session: SessionData; onChange: (s: Partial<SessionData>) => void }) {
  const link = session.inviteCode ? `${location.origin}/join/${session.inviteCode}` : '';
  const [copied, setCopied] = useState(false);
  async function rotate() {
    const d = await mutate('mutation($s: ID!) { rotateInviteCode(sessionId: $s) { inviteCode inviteEnabled } }', { s: session.id });
    onChange(d.rotateInviteCode);
  }
  async function toggle(enabled: boolean) {
    onChange({ inviteEnabled: enabled }); // at once; the answer confirms it
    try {
      const d = await mutate('mutation($s: ID!, $e: Boolean!) { setInviteEnabled(sessionId: $s, enabled: $e) { inviteCode inviteEnabled } }', { s: session.id, e: enabled });
      onChange(d.setInviteEnabled);
    } catch (err) {
      onChange({ inviteEnabled: !enabled });
      alert(errorMessage(err));
    }
  }
  async function copy() {
    try {
      await navigator.clipboard.writeText(link);
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    } catch {
      (document.getElementById('invite-link') as HTMLInputElement | null)?.select();
    }
  }
  return (
    <div className="invite">
      <label>Invite link<input id="invite-link" readOnly value={link} onFocus={(e) => e.target.select()} /></label>
      <button type="button" onClick={() => void copy()}>{copied ? 'Copied' : 'Copy invite link'}</button>
      <button type="button" onClick={() => void rotate()}>Rotate invite link</button>
      <label className="inline"><input type="checkbox" checked={!!session.inviteEnabled} onChange={(e) => void toggle(e.target.checked)} />Invite link on</label>
    </div>
  );
}

function Participants({ session, online, me, isOwner, reload }: {
  session: SessionData; online: Record<string, boolean>; me: Me; isOwner: boolean; reload: () => void;
}) {
  async function act(m: string, vars: object) {
    try {
      await mutate(m, vars);
    } catch (err) {
      alert(errorMessage(err));
    }
    reload();
  }
  return (
    <section className="panel">
      <h2>Participants</h2>
      <ul aria-label="Participants" className="participants">
        {session.participants.map((p) => {
          const on = online[p.user.id] ?? p.online;
          return (
            <li key={p.user.id}>
              <span className={`dot ${on ? 'on' : 'off'}`} role="img" aria-label={on ? 'online' : 'offline'} style={{ color: colour(p.user.id) }} />
              <span className="name">{p.user.name}{p.user.id === me.id ? ' (you)' : ''}</span>
              {isOwner && p.user.id !== me.id ? (
                <>
                  <select aria-label={`Role of ${p.user.name}`} value={p.role}
                    onChange={(e) => void act('mutation($s: ID!, $u: ID!, $r: Role!) { setParticipantRole(sessionId: $s, userId: $u, role: $r) { role } }', { s: session.id, u: p.user.id, r: e.target.value })}>
                    <option value="OWNER">owner</option>
                    <option value="EDITOR">editor</option>
                    <option value="VIEWER">viewer</option>
                  </select>
                  <button type="button" aria-label={`Remove ${p.user.name}`} onClick={() => confirm(`Remove ${p.user.name}?`) && void act('mutation($s: ID!, $u: ID!) { removeParticipant(sessionId: $s, userId: $u) }', { s: session.id, u: p.user.id })}>×</button>
                </>
              ) : <span className="role">{p.role.toLowerCase()}</span>}
            </li>
          );
        })}
      </ul>
    </section>
  );
}

interface Message { id: string; body: string; author: User; createdAt: string }
const seqOf = (id: string) => Number(id.slice(id.lastIndexOf('.') + 1));

/** Chat with its history; after a reconnect it resumes after the last message it has (messageAdded(after:)). */
function Chat({ sessionId, me }: { sessionId: string; me: Me }) {
  const [messages, setMessages] = useState<Message[]>([]);
  const [typing, setTyping] = useState<Record<string, string>>({});
  const [body, setBody] = useState('');
  const [error, setError] = useState('');
  const last = useRef<string | null>(null);
  const lastTyping = useRef(0);
  const listRef = useRef<HTMLOListElement>(null);

  useEffect(() => {
    const add = (ms: Message[]) => setMessages((old) => {
      const byId = new Map(old.map((m) => [m.id, m]));
      for (const m of ms) byId.set(m.id, m);
      const all = [...byId.values()].sort((a, b) => seqOf(a.id) - seqOf(b.id));
      if (all.length) last.current = all[all.length - 1].id;
      return all;
    });
    // Subscribe first, then read the history: nothing falls between the two.
    const stop = subscribe<{ messageAdded: Message }>(
      'subscription($s: ID!, $a: ID) { messageAdded(sessionId: $s, after: $a) { id body createdAt author { id name } } }',
      () => ({ s: sessionId, a: last.current }),
      { next: (d) => add([d.messageAdded]) },
    );
    (async () => {
      let after: string | null = null;
      for (let page = 0; page < 20; page++) {
        const d: { messages: Message[] } = await query('query($s: ID!, $a: ID) { messages(sessionId: $s, after: $a, limit: 100) { id body createdAt author { id name } } }', { s: sessionId, a: after });
        add(d.messages);
        if (d.messages.length < 100) break;
        after = d.messages[d.messages.length - 1].id;
      }
    })().catch(() => {});
    const stopTyping = subscribe<{ typing: { user: User; typing: boolean } }>(
      'subscription($s: ID!) { typing(sessionId: $s) { user { id name } typing } }',
      () => ({ s: sessionId }),
      {
        next: ({ typing: t }) => t.user.id !== me.id && setTyping((old) => {
          const n = { ...old };
          if (t.typing) n[t.user.id] = t.user.name;
          else delete n[t.user.id];
          return n;
        }),
      },
    );
    return () => { stop(); stopTyping(); };
  }, [sessionId, me.id]);

  useEffect(() => {
    listRef.current?.lastElementChild?.scrollIntoView({ block: 'nearest' });
  }, [messages]);

  function typed(v: string) {
    setBody(v);
    if (v && Date.now() - lastTyping.current > 2500) { // the server lets it lapse after 5 s
      lastTyping.current = Date.now();
      void mutate('mutation($s: ID!) { setTyping(sessionId: $s, typing: true) }', { s: sessionId }).catch(() => {});
    }
  }

  async function send(e: FormEvent) {
    e.preventDefault();
    const text = body.trim();
    if (!text) return;
    setError('');
    try {
      const d = await mutate<{ sendMessage: Message }>('mutation($s: ID!, $b: String!) { sendMessage(sessionId: $s, body: $b) { id body createdAt author { id name } } }', { s: sessionId, b: text });
      setBody('');
      lastTyping.current = 0;
      setMessages((old) => old.some((m) => m.id === d.sendMessage.id) ? old : [...old, d.sendMessage].sort((a, b) => seqOf(a.id) - seqOf(b.id)));
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  const typers = Object.values(typing);
  return (
    <section className="panel chat">
      <h2>Chat</h2>
      <ol aria-label="Chat history" className="messages" ref={listRef}>
        {messages.map((m) => (
          <li key={m.id}><strong style={{ color: colour(m.author.id) }}>{m.author.name}</strong> {m.body}</li>
        ))}
      </ol>
      <p className="typing" aria-live="polite">{typers.length ? `${typers.join(', ')} ${typers.length > 1 ? 'are' : 'is'} typing…` : '\u00a0'}</p>
      <form onSubmit={send} className="chat-form">
        <label className="sr-only" htmlFor="chat-input">Message</label>
        <input id="chat-input" value={body} onChange={(e) => typed(e.target.value)} maxLength={4000} placeholder="Message" autoComplete="off" />
        <button type="submit">Send</button>
      </form>
      {error && <p role="alert" className="error">{error}</p>}
    </section>
  );
}

type Status = 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'COMPILE_ERROR' | 'TIMED_OUT' | 'MEMORY_LIMIT' | 'OUTPUT_LIMIT' | 'CANCELLED' | 'ERROR';
const FINAL = new Set<Status>(['SUCCEEDED', 'FAILED', 'COMPILE_ERROR', 'TIMED_OUT', 'MEMORY_LIMIT', 'OUTPUT_LIMIT', 'CANCELLED', 'ERROR']);
export interface Run {
  id: string; status: Status; language: string; revision: number | null; exitCode: number | null; durationMs: number | null;
  requestedBy: User; createdAt: string; compileOutput?: string | null; queuePosition?: number | null; estimatedStartMs?: number | null;
}
const RUN_FIELDS = 'id status language revision exitCode durationMs compileOutput createdAt requestedBy { id name } queuePosition estimatedStartMs';
interface Chunk { seq: number; stream: 'STDOUT' | 'STDERR'; data: string }

/** Run, the output panel (streamed from executionOutput, for whoever started it) and the past runs. */
function Runs({ sessionId, language, canRun, waitSynced }: { sessionId: string; language: string; canRun: boolean; waitSynced: () => Promise<void> }) {
  const [runs, setRuns] = useState<Run[]>([]);
  const [current, setCurrent] = useState<string | null>(null);
  const [chunks, setChunks] = useState<Chunk[]>([]);
  const [queue, setQueue] = useState<{ position: number | null; etaMs: number | null }>({ position: null, etaMs: null });
  const [stdin, setStdin] = useState('');
  const [timeLimit, setTimeLimit] = useState('');
  const [memory, setMemory] = useState('');
  const [error, setError] = useState('');
  const [starting, setStarting] = useState(false);
  const currentRef = useRef<string | null>(null);

  const upsert = useCallback((r: Run) => setRuns((old) => {
    const i = old.findIndex((x) => x.id === r.id);
    if (i < 0) return [r, ...old];
    const n = old.slice();
    n[i] = { ...old[i], ...r };
    return n;
  }), []);

  const show = useCallback((id: string) => {
    if (currentRef.current === id) return;
    currentRef.current = id;
    setCurrent(id);
    setChunks([]);
    setQueue({ position: null, etaMs: null });
  }, []);

  useEffect(() => {
    query(`query($s: ID!) { executions(sessionId: $s, limit: 20) { ${RUN_FIELDS} } }`, { s: sessionId })
      .then((d) => setRuns((old) => {
        const ids = new Set(old.map((r) => r.id));
        return [...old, ...d.executions.filter((r: Run) => !ids.has(r.id))];
      }))
      .catch(() => {});
    return subscribe<{ sessionExecutions: Run }>(
      `subscription($s: ID!) { sessionExecutions(sessionId: $s) { ${RUN_FIELDS} } }`,
      () => ({ s: sessionId }),
      {
        next: ({ sessionExecutions: r }) => {
          upsert(r);
          if (!FINAL.has(r.status)) show(r.id); // a new run, anyone's: watch it
        },
      },
    );
  }, [sessionId, upsert, show]);

  // The chosen run's output, replayed from its first chunk and then live.
  useEffect(() => {
    if (!current) return;
    let lastSeq = 0;
    return subscribe<{ executionOutput: { seq: number; stream: Chunk['stream'] | null; data: string | null; status: Status; queuePosition: number | null; estimatedStartMs: number | null } }>(
      'subscription($e: ID!) { executionOutput(executionId: $e) { seq stream data status queuePosition estimatedStartMs } }',
      () => ({ e: current }),
      {
        next: ({ executionOutput: o }) => {
          if (o.data == null && o.status === 'QUEUED') {
            // Sent again (same seq) whenever the run's place in the queue changes.
            setQueue({ position: o.queuePosition ?? null, etaMs: o.estimatedStartMs ?? null });
            lastSeq = Math.max(lastSeq, o.seq);
            return;
          }
          if (o.seq <= lastSeq) return; // a replay after a reconnect
          lastSeq = o.seq;
          if (o.data != null && o.stream) {
            setChunks((c) => [...c, { seq: o.seq, stream: o.stream!, data: o.data! }]);
            return;
          }
          if (o.status === 'RUNNING') setChunks([]); // (again: a retried attempt replaces the first)
          setQueue({ position: o.queuePosition ?? null, etaMs: o.estimatedStartMs ?? null });
          setRuns((old) => old.map((r) => (r.id === current ? { ...r, status: o.status } : r)));
          if (FINAL.has(o.status)) {
            // The final record: exit code and duration.
            query(`query($e: ID!) { execution(id: $e) { ${RUN_FIELDS} } }`, { e: current }).then((d) => d.execution && upsert(d.execution)).catch(() => {});
          }
        },
      },
      { endless: false }, // it completes after the final status
    );
  }, [current, upsert]);

  async function run() {
    setError('');
    setStarting(true);
    try {
      await waitSynced(); // the run takes the session's code: our edits first
      const input: Record<string, unknown> = { sessionId, language };
      if (stdin) input.stdin = stdin;
      if (timeLimit) input.timeLimitMs = Number(timeLimit);
      if (memory) input.memoryLimitMb = Number(memory);
      const d = await mutate<{ execute: Run }>(`mutation($i: ExecuteInput!) { execute(input: $i) { ${RUN_FIELDS} } }`, { i: input });
      upsert(d.execute);
      show(d.execute.id);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setStarting(false);
    }
  }

  const cur = runs.find((r) => r.id === current);
  const position = queue.position ?? cur?.queuePosition ?? null;
  const eta = queue.etaMs ?? cur?.estimatedStartMs ?? null;
  return (
    <section className="panel runs">
      <div className="run-bar">
        <button type="button" onClick={() => void run()} disabled={!canRun || starting} title={canRun ? '' : 'Viewers cannot run code'}>Run</button>
        <label>Time limit (ms)<input type="number" min={1} value={timeLimit} onChange={(e) => setTimeLimit(e.target.value)} placeholder="5000" /></label>
        <label>Memory (MB)<input type="number" min={6} value={memory} onChange={(e) => setMemory(e.target.value)} placeholder="256" /></label>
      </div>
      <label className="stdin">Stdin<textarea value={stdin} onChange={(e) => setStdin(e.target.value)} rows={2} /></label>
      {error && <p role="alert" className="error">{error}</p>}
      <section aria-label="Output" className="output">
        {cur ? (
          <p className="run-status">
            <span data-testid="run-status">{cur.status}</span>
            {cur.status === 'QUEUED' && position != null && <> · <span data-testid="queue">{position === 0 ? 'next in the queue' : `${position} ahead`}{eta != null && `, starts in about ${Math.ceil(eta / 1000)} s`}</span></>}
            {cur.exitCode != null && <> · exit code {cur.exitCode}</>}
            {cur.durationMs != null && <> · {cur.durationMs} ms</>}
            <span className="muted"> · {cur.requestedBy.name}{cur.revision != null && `, revision ${cur.revision}`}</span>
          </p>
        ) : <p className="muted">No run yet.</p>}
        {cur?.compileOutput && <pre className="compile">{cur.compileOutput}</pre>}
        <pre className="stream">{chunks.map((c) => <span key={c.seq} className={c.stream === 'STDERR' ? 'stderr' : 'stdout'}>{c.data}</span>)}</pre>
      </section>
      <details className="past">
        <summary>Past runs ({runs.length})</summary>
        <ul aria-label="Past runs">
          {runs.map((r) => (
            <li key={r.id}>
              <button type="button" className="link" onClick={() => show(r.id)}>{new Date(r.createdAt).toLocaleTimeString()} {r.language} {r.status}</button>
              <span className="muted"> {r.requestedBy.name}{r.durationMs != null && ` · ${r.durationMs} ms`}</span>
            </li>
          ))}
        </ul>
      </details>
    </section>
  );
}
