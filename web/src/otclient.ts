// The client side of the editing protocol (README "Editing: the protocol"),
// as ot.js's client: one edit in flight, later local edits composed into one
// buffer, incoming edits transformed over both (theirs first at a tie, as
// the server orders them) before they touch the document.
import { TextOp, compose, transform, transformIndex } from './ot';

/** An edit as the server applied it (codeEdited). */
export interface AppliedEdit { revision: number; op: TextOp; authorId: string }

export interface OTHooks {
  /** Send op, made at revision base, as submission seq of this tab. */
  send(base: number, op: TextOp, seq: number): void;
  /** Apply someone else's edit (already transformed) to the editor. */
  apply(op: TextOp): void;
  /** The client reached a new revision (for cursors and the UI). */
  changed?(): void;
}

interface InFlight {
  /** The edit as the server will apply it, transformed over what came since. */
  op: TextOp;
  seq: number;
  /** The revision it got, once the server answered. */
  ackRevision?: number;
}

export class OTClient {
  private inflight: InFlight | null = null;
  private buffer: TextOp | null = null;
  private seq = 0;
  /** Incoming edits not yet applied, by revision: they may come out of order or before the answer to ours. */
  private incoming = new Map<number, AppliedEdit>();

  constructor(
    /** The revision the document is at, not counting local edits still to be acknowledged. */
    public revision: number,
    private readonly me: string,
    private readonly hooks: OTHooks,
  ) {}

  /** A local edit of the document. */
  local(op: TextOp): void {
    if (op.isNoop()) return;
    if (!this.inflight) this.sendNow(op);
    else this.buffer = this.buffer ? compose(this.buffer, op) : op;
  }

  /** An edit from codeEdited: replays and duplicates are dropped, gaps wait. */
  received(e: AppliedEdit): void {
    if (e.revision <= this.revision) return;
    this.incoming.set(e.revision, e);
    this.drain();
  }

  /** The server's answer to our submission seq: it is revision. */
  acked(seq: number, revision: number): void {
    if (this.inflight?.seq === seq) {
      this.inflight.ackRevision = revision;
      this.drain();
    }
  }

  /** Nothing local is waiting for the server. */
  get synchronized(): boolean {
    return !this.inflight && !this.buffer;
  }

  /** A cursor at the server's revision, moved over our unacknowledged edits. */
  localIndex(index: number): number {
    if (this.inflight) index = transformIndex(this.inflight.op, index);
    if (this.buffer) index = transformIndex(this.buffer, index);
    return index;
  }

  private sendNow(op: TextOp): void {
    this.inflight = { op, seq: ++this.seq };
    this.hooks.send(this.revision, op, this.seq);
  }

  private drain(): void {
    let moved = false;
    for (;;) {
      const next = this.revision + 1;
      if (this.inflight?.ackRevision === next) {
        this.incoming.delete(next); // its codeEdited echo
        this.revision = next;
        this.inflight = null;
        moved = true;
        if (this.buffer) {
          const b = this.buffer;
          this.buffer = null;
          this.sendNow(b);
        }
        continue;
      }
      const e = this.incoming.get(next);
      if (!e) break;
      // An edit of ours (this user) while we wait for our answer may be
      // that answer's echo: wait for the answer to tell.
      if (this.inflight && this.inflight.ackRevision === undefined && e.authorId === this.me) break;
      this.incoming.delete(next);
      this.revision = next;
      this.foreign(e.op);
      moved = true;
    }
    if (moved) this.hooks.changed?.();
  }

  private foreign(op: TextOp): void {
    // An edit the server's transform emptied (both deleted the same text)
    // still takes a revision, with no ops: nothing to apply or rebase over.
    if (op.isNoop()) return;
    if (this.inflight) {
      const [theirs, ours] = transform(op, this.inflight.op);
      this.inflight.op = ours;
      op = theirs;
    }
    if (this.buffer) {
      const [theirs, ours] = transform(op, this.buffer);
      this.buffer = ours;
      op = theirs;
    }
    this.hooks.apply(op);
  }
}
