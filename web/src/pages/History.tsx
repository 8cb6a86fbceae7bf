import { useEffect, useMemo, useRef, useState } from 'react';
import { query, mutate, subscribe, errorCode, errorMessage } from '../api';
import { navigate } from '../router';

interface Item {
  cursor: string; kind: 'EDITS' | 'MESSAGE' | 'RUN' | 'JOINED' | 'LEFT' | 'REMOVED' | 'ROLE_CHANGED'; at: string;
  user: { id: string; name: string }; fromRevision: number | null; toRevision: number | null; editCount: number | null;
  message: { id: string; body: string } | null;
  execution: { id: string; status: string; revision: number | null; exitCode: number | null; durationMs: number | null } | null;
  role: string | null;
}
const ITEM = `cursor kind at user { id name } fromRevision toRevision editCount message { id body }
  execution { id status revision exitCode durationMs } role`;
const PAGE = 40; // items a page: within the query complexity limit (1000)

function describe(it: Item): string {
  switch (it.kind) {
    case 'EDITS': return `${it.user.name} edited (${it.editCount ?? 1} edit${it.editCount === 1 ? '' : 's'}, revision ${it.toRevision})`;
    case 'MESSAGE': return `${it.user.name}: ${it.message?.body ?? ''}`;
    case 'RUN': return `${it.user.name} ran it: ${it.execution?.status ?? ''}${it.execution?.exitCode != null ? `, exit code ${it.execution.exitCode}` : ''}`;
    case 'JOINED': return `${it.user.name} joined${it.role ? ` as ${it.role.toLowerCase()}` : ''}`;
    case 'LEFT': return `${it.user.name} left`;
    case 'REMOVED': return `${it.user.name} was removed`;
    case 'ROLE_CHANGED': return `${it.user.name} is now ${it.role?.toLowerCase() ?? ''}`;
  }
}

/**
 * The history slider: plays the session back from its timeline (the code at
 * each step, chat and runs as they happened) and forks from any point. When
 * the server has no timeline (UNAVAILABLE), it steps through the revisions
 * (codeAt) instead.
 */
export function History({ sessionId, revision }: { sessionId: string; revision: number }) {
  const [open, setOpen] = useState(false);
  const [items, setItems] = useState<Item[] | null>(null);
  const [revisionsOnly, setRevisionsOnly] = useState(false);
  const [pos, setPos] = useState(0);
  const [code, setCode] = useState<string | null>(null);
  const [playing, setPlaying] = useState(false);
  const [error, setError] = useState('');
  const last = useRef<string | null>(null);

  useEffect(() => {
    if (!open) return;
    let live = true;
    let stop: (() => void) | undefined;
    const upsert = (more: Item[]) => setItems((old) => {
      const byCursor = new Map((old ?? []).map((i) => [i.cursor, i]));
      for (const i of more) byCursor.set(i.cursor, i); // a growing edit burst comes again with its cursor
      const all = [...byCursor.values()];
      if (all.length) last.current = all[all.length - 1].cursor;
      return all;
    });
    (async () => {
      try {
        let after: string | null = null;
        for (;;) {
          const d: { timeline: Item[] } = await query(`query($s: ID!, $a: String, $l: Int) { timeline(sessionId: $s, after: $a, limit: $l) { ${ITEM} } }`, { s: sessionId, a: after, l: PAGE });
          if (!live) return;
          upsert(d.timeline);
          if (d.timeline.length < PAGE) break;
          after = d.timeline[d.timeline.length - 1].cursor;
        }
        setItems((i) => i ?? []);
        setPos(Number.MAX_SAFE_INTEGER); // start at the present
        stop = subscribe<{ timelineAdded: Item }>(`subscription($s: ID!, $a: String) { timelineAdded(sessionId: $s, after: $a) { ${ITEM} } }`,
          () => ({ s: sessionId, a: last.current }), { next: (d) => upsert([d.timelineAdded]) });
      } catch (err) {
        if (!live) return;
        if (errorCode(err) === 'UNAVAILABLE') {
          setRevisionsOnly(true);
          setItems([]);
          setPos(Number.MAX_SAFE_INTEGER);
        } else setError(errorMessage(err));
      }
    })();
    return () => { live = false; stop?.(); };
  }, [open, sessionId]);

  const steps = revisionsOnly ? revision + 1 : (items?.length ?? 0);
  const at = Math.min(pos, Math.max(0, steps - 1));
  // The revision the code was at, at step `at`.
  const revAt = useMemo(() => {
    if (revisionsOnly) return at;
    let r = 0;
    for (let i = 0; i <= at && items && i < items.length; i++) if (items[i].kind === 'EDITS' && items[i].toRevision != null) r = Math.max(r, items[i].toRevision!);
    return r;
  }, [revisionsOnly, at, items]);

  useEffect(() => {
    if (!open || steps === 0) return;
    let live = true;
    const t = setTimeout(() => {
      query('query($s: ID!, $r: Int!) { codeAt(sessionId: $s, revision: $r) }', { s: sessionId, r: revAt })
        .then((d) => live && setCode(d.codeAt)).catch((err) => live && setError(errorMessage(err)));
    }, 60);
    return () => { live = false; clearTimeout(t); };
  }, [open, steps, revAt, sessionId]);

  useEffect(() => {
    if (!playing) return;
    if (at >= steps - 1) { setPlaying(false); return; }
    const t = setTimeout(() => setPos(at + 1), 500);
    return () => clearTimeout(t);
  }, [playing, at, steps]);

  async function fork() {
    try {
      const d = await mutate('mutation($s: ID!, $r: Int!) { forkSession(sessionId: $s, revision: $r) { id } }', { s: sessionId, r: revAt });
      navigate(`/s/${d.forkSession.id}`);
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  const shown = items && !revisionsOnly ? items.slice(0, at + 1) : [];
  const lastRun = [...shown].reverse().find((i) => i.kind === 'RUN')?.execution;
  const [runOutput, setRunOutput] = useState<{ id: string; stdout: string; stderr: string } | null>(null);
  useEffect(() => {
    if (!lastRun || runOutput?.id === lastRun.id) return;
    query('query($e: ID!) { execution(id: $e) { id stdout stderr } }', { e: lastRun.id })
      .then((d) => d.execution && setRunOutput(d.execution)).catch(() => {});
  }, [lastRun, runOutput]);
  return (
    <section className="panel history" aria-label="History">
      <button type="button" aria-expanded={open} onClick={() => { setOpen(!open); setPlaying(false); }}>{open ? 'Close history' : 'History'}</button>
      {open && (items === null ? <p>Loading…</p> : (
        <div>
          {revisionsOnly && <p className="muted">The timeline is not available on this server: stepping through the code's revisions.</p>}
          <div className="slider">
            <button type="button" onClick={() => { if (at >= steps - 1) setPos(0); setPlaying(!playing); }} disabled={steps < 2}>{playing ? 'Pause' : 'Play'}</button>
            <input type="range" aria-label="History position" min={0} max={Math.max(0, steps - 1)} value={at} onChange={(e) => { setPlaying(false); setPos(Number(e.target.value)); }} disabled={steps < 2} />
            <span className="muted">{steps ? `${at + 1} / ${steps} · revision ${revAt}` : 'nothing yet'}{!revisionsOnly && shown.length > 0 && ` · ${new Date(shown[shown.length - 1].at).toLocaleString()}`}</span>
            <button type="button" onClick={() => void fork()} disabled={steps === 0}>Fork from here</button>
          </div>
          {error && <p role="alert" className="error">{error}</p>}
          <div className="history-view">
            <pre aria-label="Code at this point" className="history-code">{code ?? ''}</pre>
            {!revisionsOnly && (
              <div>
                <ol aria-label="Timeline" className="timeline">
                  {shown.slice(-12).map((i) => <li key={i.cursor} className={`kind-${i.kind.toLowerCase()}`}>{describe(i)}</li>)}
                </ol>
                {lastRun && runOutput?.id === lastRun.id && <pre className="stream" aria-label="Output of the last run so far"><span className="stdout">{runOutput.stdout}</span><span className="stderr">{runOutput.stderr}</span></pre>}
              </div>
            )}
          </div>
        </div>
      ))}
    </section>
  );
}
