// Text operations in Unicode code points, the server's unit (package ot,
// as in ot.js): a list of components walking the whole document, a
// positive number retains, a negative one deletes, a string inserts.
// Browser editors count UTF-16 units; the conversions at the end of this
// file are the only place the two meet.

export type Component = number | string;

/** The number of code points of s ("😀" is 1). */
export function cpLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/** The UTF-16 offset in s that is n code points after UTF-16 offset from. */
export function advance(s: string, from: number, n: number): number {
  let i = from;
  for (let k = 0; k < n && i < s.length; k++) {
    const c = s.charCodeAt(i);
    const pair = c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00;
    i += pair ? 2 : 1;
  }
  return i;
}

export const cpToUtf16 = (s: string, cp: number) => advance(s, 0, cp);
export const utf16ToCp = (s: string, u: number) => cpLength(s.slice(0, u));

function cpSlice(s: string, start: number, end?: number): string {
  const a = advance(s, 0, start);
  return end === undefined ? s.slice(a) : s.slice(a, advance(s, a, end - start));
}

const isRetain = (c: Component): c is number => typeof c === 'number' && c > 0;
const isDelete = (c: Component): c is number => typeof c === 'number' && c < 0;
const isInsert = (c: Component): c is string => typeof c === 'string';

export class TextOp {
  ops: Component[] = [];
  /** Code points of the document the operation applies to. */
  baseLength = 0;
  /** Code points of the document it produces. */
  targetLength = 0;

  retain(n: number): this {
    if (n <= 0) return this;
    this.baseLength += n;
    this.targetLength += n;
    const last = this.ops.length - 1;
    if (last >= 0 && isRetain(this.ops[last])) (this.ops[last] as number) += n;
    else this.ops.push(n);
    return this;
  }

  insert(s: string): this {
    if (s === '') return this;
    this.targetLength += cpLength(s);
    const ops = this.ops;
    const last = ops.length - 1;
    if (last >= 0 && isInsert(ops[last])) {
      ops[last] = (ops[last] as string) + s;
    } else if (last >= 0 && isDelete(ops[last])) {
      // An insert goes before a delete at one position (the server's normal form).
      if (last > 0 && isInsert(ops[last - 1])) ops[last - 1] = (ops[last - 1] as string) + s;
      else ops.splice(last, 0, s);
    } else {
      ops.push(s);
    }
    return this;
  }

  delete(n: number): this {
    if (n <= 0) return this;
    this.baseLength += n;
    const last = this.ops.length - 1;
    if (last >= 0 && isDelete(this.ops[last])) (this.ops[last] as number) -= n;
    else this.ops.push(-n);
    return this;
  }

  isNoop(): boolean {
    return this.ops.length === 0 || (this.ops.length === 1 && isRetain(this.ops[0]));
  }

  apply(doc: string): string {
    if (cpLength(doc) !== this.baseLength) throw new Error(`operation of length ${this.baseLength} on a document of ${cpLength(doc)}`);
    let out = '';
    let i = 0; // UTF-16 offset in doc
    for (const c of this.ops) {
      if (isRetain(c)) {
        const j = advance(doc, i, c);
        out += doc.slice(i, j);
        i = j;
      } else if (isInsert(c)) {
        out += c;
      } else {
        i = advance(doc, i, -c);
      }
    }
    return out;
  }

  /** The GraphQL form: [{retain}, {insert}, {delete}]. */
  toInput(): { retain?: number; insert?: string; delete?: number }[] {
    return this.ops.map((c) => (isRetain(c) ? { retain: c } : isInsert(c) ? { insert: c } : { delete: -c }));
  }

  static fromInput(ops: readonly { retain?: number | null; insert?: string | null; delete?: number | null }[]): TextOp {
    const op = new TextOp();
    for (const c of ops) {
      if (c.retain != null) op.retain(c.retain);
      else if (c.insert != null) op.insert(c.insert);
      else if (c.delete != null) op.delete(c.delete);
    }
    return op;
  }
}

/** a then b as one operation. */
export function compose(a: TextOp, b: TextOp): TextOp {
  if (a.targetLength !== b.baseLength) throw new Error('compose: lengths differ');
  const out = new TextOp();
  const as = a.ops, bs = b.ops;
  let i = 0, j = 0;
  let x: Component | undefined = as[i++], y: Component | undefined = bs[j++];
  for (;;) {
    if (x === undefined && y === undefined) break;
    if (isDelete(x!)) { out.delete(-x); x = as[i++]; continue; }
    if (isInsert(y!)) { out.insert(y); y = bs[j++]; continue; }
    if (x === undefined || y === undefined) throw new Error('compose: operations do not line up');
    if (isRetain(x) && isRetain(y)) {
      if (x > y) { out.retain(y); x = x - y; y = bs[j++]; }
      else if (x === y) { out.retain(x); x = as[i++]; y = bs[j++]; }
      else { out.retain(x); y = y - x; x = as[i++]; }
    } else if (isInsert(x) && isDelete(y)) {
      const n = cpLength(x);
      if (n > -y) { x = cpSlice(x, -y); y = bs[j++]; }
      else if (n === -y) { x = as[i++]; y = bs[j++]; }
      else { y = y + n; x = as[i++]; }
    } else if (isInsert(x) && isRetain(y)) {
      const n = cpLength(x);
      if (n > y) { out.insert(cpSlice(x, 0, y)); x = cpSlice(x, y); y = bs[j++]; }
      else if (n === y) { out.insert(x); x = as[i++]; y = bs[j++]; }
      else { out.insert(x); y = y - n; x = as[i++]; }
    } else if (isRetain(x) && isDelete(y)) {
      if (x > -y) { out.delete(-y); x = x + y; y = bs[j++]; }
      else if (x === -y) { out.delete(-y); x = as[i++]; y = bs[j++]; }
      else { out.delete(x); y = y + x; x = as[i++]; }
    } else {
      throw new Error('compose: operations do not line up');
    }
  }
  return out;
}

/**
 * transform(a, b) for two operations on one document gives [a', b'] with
 * b∘a' = a∘b'. At a tie (both insert at one position) a's insert goes
 * first: pass the edit the server applied first as a, as the server does
 * (Transform(applied, yours)).
 */
export function transform(a: TextOp, b: TextOp): [TextOp, TextOp] {
  if (a.baseLength !== b.baseLength) throw new Error('transform: base lengths differ');
  const ap = new TextOp(), bp = new TextOp();
  const as = a.ops, bs = b.ops;
  let i = 0, j = 0;
  let x: Component | undefined = as[i++], y: Component | undefined = bs[j++];
  for (;;) {
    if (x === undefined && y === undefined) break;
    if (x !== undefined && isInsert(x)) { ap.insert(x); bp.retain(cpLength(x)); x = as[i++]; continue; }
    if (y !== undefined && isInsert(y)) { ap.retain(cpLength(y)); bp.insert(y); y = bs[j++]; continue; }
    if (x === undefined || y === undefined) throw new Error('transform: operations do not line up');
    let n: number;
    if (isRetain(x) && isRetain(y)) {
      if (x > y) { n = y; x = x - y; y = bs[j++]; }
      else if (x === y) { n = y; x = as[i++]; y = bs[j++]; }
      else { n = x; y = y - x; x = as[i++]; }
      ap.retain(n); bp.retain(n);
    } else if (isDelete(x) && isDelete(y)) {
      if (-x > -y) { x = x - y; y = bs[j++]; }
      else if (x === y) { x = as[i++]; y = bs[j++]; }
      else { y = y - x; x = as[i++]; }
    } else if (isDelete(x) && isRetain(y)) {
      if (-x > y) { n = y; x = x + y; y = bs[j++]; }
      else if (-x === y) { n = y; x = as[i++]; y = bs[j++]; }
      else { n = -x; y = y + x; x = as[i++]; }
      ap.delete(n);
    } else if (isRetain(x) && isDelete(y)) {
      if (x > -y) { n = -y; x = x + y; y = bs[j++]; }
      else if (x === -y) { n = x; x = as[i++]; y = bs[j++]; }
      else { n = x; y = y + x; x = as[i++]; }
      bp.delete(n);
    } else {
      throw new Error('transform: operations do not line up');
    }
  }
  return [ap, bp];
}

/** Where a cursor at index (code points) goes when op is applied; an insert at the cursor pushes it. */
export function transformIndex(op: TextOp, index: number): number {
  let pos = 0, out = index;
  for (const c of op.ops) {
    if (pos > index) break;
    if (isRetain(c)) pos += c;
    else if (isInsert(c)) out += cpLength(c);
    else { out -= Math.min(-c, index - pos); pos -= c; }
  }
  return out;
}

/** One change of an editor, in UTF-16 offsets of the document before it. */
export interface Utf16Change { from: number; to: number; insert: string }

/** The code-point operation of editor changes (sorted, not overlapping, on doc). */
export function fromUtf16Changes(doc: string, changes: readonly Utf16Change[]): TextOp {
  const op = new TextOp();
  let pos = 0;
  for (const ch of changes) {
    op.retain(cpLength(doc.slice(pos, ch.from)));
    op.delete(cpLength(doc.slice(ch.from, ch.to)));
    op.insert(ch.insert);
    pos = ch.to;
  }
  op.retain(cpLength(doc.slice(pos)));
  return op;
}

/** The editor changes (UTF-16 offsets in doc) of a code-point operation on doc. */
export function toUtf16Changes(doc: string, op: TextOp): Utf16Change[] {
  const out: Utf16Change[] = [];
  let pos = 0;
  for (const c of op.ops) {
    if (isRetain(c)) pos = advance(doc, pos, c);
    else if (isInsert(c)) out.push({ from: pos, to: pos, insert: c });
    else {
      const end = advance(doc, pos, -c);
      out.push({ from: pos, to: end, insert: '' });
      pos = end;
    }
  }
  return out;
}
