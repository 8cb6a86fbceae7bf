// CodeMirror 6: the ten languages, the accessible name, read-only for
// viewers, and other participants' cursors and selections.
import { EditorState, Compartment, StateEffect, StateField, type Extension, type Range } from '@codemirror/state';
import { EditorView, Decoration, WidgetType, type DecorationSet } from '@codemirror/view';
import { basicSetup } from 'codemirror';
import { StreamLanguage } from '@codemirror/language';
import { python } from '@codemirror/lang-python';
import { javascript } from '@codemirror/lang-javascript';
import { java } from '@codemirror/lang-java';
import { cpp } from '@codemirror/lang-cpp';
import { go } from '@codemirror/lang-go';
import { rust } from '@codemirror/lang-rust';
import { ruby } from '@codemirror/legacy-modes/mode/ruby';
import { shell } from '@codemirror/legacy-modes/mode/shell';

export function languageSupport(language: string): Extension {
  switch (language) {
    case 'python': return python();
    case 'javascript': return javascript();
    case 'typescript': return javascript({ typescript: true });
    case 'java': return java();
    case 'c': case 'cpp': return cpp();
    case 'go': return go();
    case 'rust': return rust();
    case 'ruby': return StreamLanguage.define(ruby);
    case 'bash': return StreamLanguage.define(shell);
    default: return [];
  }
}

/** A participant's colour, stable per user. */
export function colour(userId: string): string {
  let h = 0;
  for (const c of userId) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360} 70% 42%)`;
}

export interface RemoteRange { anchor: number; head: number } // UTF-16, current document
export interface RemoteCursor { userId: string; name: string; ranges: RemoteRange[] }

/** Sets (or, with no ranges, clears) one user's cursors. */
export const setRemote = StateEffect.define<RemoteCursor>();

class Caret extends WidgetType {
  constructor(readonly name: string, readonly colour: string) { super(); }
  eq(o: Caret) { return o.name === this.name && o.colour === this.colour; }
  toDOM() {
    const el = document.createElement('span');
    el.className = 'cc-remote-caret';
    el.style.borderLeftColor = this.colour;
    el.setAttribute('aria-hidden', 'true');
    const label = document.createElement('span');
    label.className = 'cc-remote-name';
    label.style.backgroundColor = this.colour;
    label.textContent = this.name;
    el.appendChild(label);
    return el;
  }
  ignoreEvent() { return true; }
}

interface CursorState { users: Map<string, RemoteCursor>; deco: DecorationSet }

function build(users: Map<string, RemoteCursor>, len: number): DecorationSet {
  const out: Range<Decoration>[] = [];
  for (const u of users.values()) {
    const c = colour(u.userId);
    for (const r of u.ranges) {
      const from = Math.min(Math.max(0, Math.min(r.anchor, r.head)), len);
      const to = Math.min(Math.max(r.anchor, r.head), len);
      if (from < to) out.push(Decoration.mark({ class: 'cc-remote-selection', attributes: { style: `background-color: color-mix(in srgb, ${c} 25%, transparent)` } }).range(from, to));
      out.push(Decoration.widget({ widget: new Caret(u.name, c), side: 1 }).range(Math.min(Math.max(0, r.head), len)));
    }
  }
  return Decoration.set(out, true);
}

const remoteCursors = StateField.define<CursorState>({
  create: () => ({ users: new Map(), deco: Decoration.none }),
  update(value, tr) {
    let users = value.users;
    if (tr.docChanged) {
      // Keep them where they were in the text as it changes.
      users = new Map([...users].map(([id, u]) => [id, {
        ...u, ranges: u.ranges.map((r) => ({ anchor: tr.changes.mapPos(r.anchor), head: tr.changes.mapPos(r.head) })),
      }]));
    }
    let changed = tr.docChanged;
    for (const e of tr.effects) {
      if (!e.is(setRemote)) continue;
      if (users === value.users) users = new Map(users);
      if (e.value.ranges.length) users.set(e.value.userId, e.value);
      else users.delete(e.value.userId);
      changed = true;
    }
    return changed ? { users, deco: build(users, tr.newDoc.length) } : value;
  },
  provide: (f) => EditorView.decorations.from(f, (v) => v.deco),
});

export const languageConf = new Compartment();
export const readOnlyConf = new Compartment();

export const readOnly = (ro: boolean) => [EditorState.readOnly.of(ro), EditorView.editable.of(!ro)];

export function createEditor(parent: HTMLElement, doc: string, language: string, ro: boolean, onUpdate: Extension): EditorView {
  return new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        basicSetup,
        languageConf.of(languageSupport(language)),
        readOnlyConf.of(readOnly(ro)),
        EditorView.contentAttributes.of({ 'aria-label': 'Code' }),
        remoteCursors,
        onUpdate,
      ],
    }),
  });
}
